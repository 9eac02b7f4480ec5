"""EIP-2612 permit and DvPSettlement (atomic swap, refund, hash lock) on a real anvil node."""

from __future__ import annotations

import hashlib
import time

import pytest

from andchain.chains.client import Call, TxReverted
from andchain.chains.contracts import artifact, memo32, permit_digest
from tests.chains.conftest import CHAIN_ID, TokenWorld, deploy_token

DVP = artifact("DvPSettlement").abi


def sign_permit(token: TokenWorld, owner: str, spender: str, value: int, deadline: int, nonce: int | None = None):
    nonce = token.read("nonces", owner) if nonce is None else nonce
    digest = permit_digest("Bank USD Deposit Token", CHAIN_ID, token.address, owner, spender, value, nonce, deadline)
    return token.chain.signer(owner).sign_message_hash(digest)


def test_permit_sets_an_allowance_from_a_signature(token: TokenWorld):
    token.tx(token.minter, "mint", token.alice, 100, memo32("m"))
    deadline = int(time.time()) + 3600
    v, r, s = sign_permit(token, token.alice, token.bob, 60, deadline)
    receipt = token.tx(token.bob, "permit", token.alice, token.bob, 60, deadline, v, r, s)
    assert ("Approval", {"owner": token.alice, "spender": token.bob, "value": 60}) in token.events(receipt)
    assert token.read("nonces", token.alice) == 1
    token.tx(token.bob, "transferFrom", token.alice, token.bob, 60)
    assert token.read("balanceOf", token.bob) == 60
    # The same signature cannot be used twice: the nonce moved on.
    assert token.refused(token.bob, "permit", token.alice, token.bob, 60, deadline, v, r, s) == "invalid signature"


def test_permit_refuses_expired_forged_and_malleable_signatures(token: TokenWorld):
    past = int(time.time()) - 10
    v, r, s = sign_permit(token, token.alice, token.bob, 5, past)
    assert token.refused(token.bob, "permit", token.alice, token.bob, 5, past, v, r, s) == "permit expired"
    future = int(time.time()) + 3600
    v, r, s = sign_permit(token, token.bob, token.bob, 5, future)  # bob signs for alice's allowance
    assert token.refused(token.bob, "permit", token.alice, token.bob, 5, future, v, r, s) == "invalid signature"
    v, r, s = sign_permit(token, token.alice, token.bob, 5, future)
    order = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141
    twin = (order - int.from_bytes(s, "big")).to_bytes(32, "big")
    assert token.refused(token.bob, "permit", token.alice, token.bob, 5, future, 55 - v, r, twin) == (
        "invalid signature"
    )
    assert token.read("allowance", token.alice, token.bob) == 0


@pytest.fixture
def dvp(ctx, token: TokenWorld):
    """The deposit token, a tokenized fund share, and the DvP contract allow-listed on both."""
    fund_share = deploy_token(ctx, name="mmf_share", decimals=6)
    address = token.chain.deploy("dvp", "DvPSettlement", [token.admin], token.admin)
    for t in (token, fund_share):
        t.tx(t.compliance, "batchSetAllowlisted", [address, token.alice, token.bob], True)
    token.tx(token.minter, "mint", token.alice, 10_000, memo32("cash"))
    fund_share.tx(fund_share.minter, "mint", token.bob, 5_000_000, memo32("shares"))
    return token, fund_share, address


def dvp_tx(chain, sender, address, fn, *args):
    return chain.transact(sender, Call(address, DVP.encode_call(fn, *args)))


def test_dvp_swaps_both_legs_atomically(dvp):
    cash, shares, address = dvp
    chain = cash.chain
    trade = memo32("trade-1")
    deadline = int(time.time()) + 600
    dvp_tx(
        chain,
        cash.alice,
        address,
        "propose",
        trade,
        cash.alice,
        cash.bob,
        cash.address,
        2_500,
        shares.address,
        1_000_000,
        deadline,
    )
    cash.tx(cash.alice, "approve", address, 2_500)
    shares.tx(cash.bob, "approve", address, 1_000_000)
    dvp_tx(chain, cash.alice, address, "fund", trade)
    assert cash.read("balanceOf", address) == 2_500  # escrowed, not yet delivered
    assert shares.read("balanceOf", cash.alice) == 0
    dvp_tx(chain, cash.bob, address, "fund", trade)
    assert (cash.read("balanceOf", cash.bob), shares.read("balanceOf", cash.alice)) == (2_500, 1_000_000)
    assert (cash.read("balanceOf", address), shares.read("balanceOf", address)) == (0, 0)
    state = chain.read(address, DVP, "trades", trade)
    assert state[-1] == 2  # settled
    with pytest.raises(TxReverted, match="trade not open"):
        dvp_tx(chain, cash.bob, address, "fund", trade)


def test_dvp_refunds_after_expiry_and_refuses_late_or_foreign_funding(dvp):
    cash, shares, address = dvp
    chain = cash.chain
    trade = memo32("trade-2")
    now = chain.block()["timestamp"]
    deadline = int(now, 16) + 60
    dvp_tx(
        chain,
        cash.alice,
        address,
        "propose",
        trade,
        cash.alice,
        cash.bob,
        cash.address,
        700,
        shares.address,
        1,
        deadline,
    )
    with pytest.raises(TxReverted, match="not a party"):
        dvp_tx(chain, cash.minter, address, "fund", trade)
    cash.tx(cash.alice, "approve", address, 700)
    dvp_tx(chain, cash.alice, address, "fund", trade)
    with pytest.raises(TxReverted, match="trade not expired"):
        dvp_tx(chain, cash.bob, address, "refund", trade)
    chain.rpc.call("evm_increaseTime", [120])
    chain.rpc.call("evm_mine", [])
    with pytest.raises(TxReverted, match="trade expired"):
        dvp_tx(chain, cash.bob, address, "fund", trade)
    dvp_tx(chain, cash.bob, address, "refund", trade)
    assert cash.read("balanceOf", cash.alice) == 10_000
    assert shares.read("balanceOf", cash.bob) == 5_000_000


def test_hash_locked_leg_is_claimed_with_the_secret_or_refunded_after_expiry(dvp):
    cash, _shares, address = dvp
    chain = cash.chain
    secret = memo32("the secret of trade 3")
    hashlock = hashlib.sha256(secret).digest()
    deadline = int(chain.block()["timestamp"], 16) + 60
    cash.tx(cash.alice, "approve", address, 900)
    dvp_tx(chain, cash.alice, address, "lock", memo32("lock-3"), cash.bob, cash.address, 400, hashlock, deadline)
    with pytest.raises(TxReverted, match="wrong preimage"):
        dvp_tx(chain, cash.bob, address, "claim", memo32("lock-3"), memo32("guess"))
    receipt = dvp_tx(chain, cash.bob, address, "claim", memo32("lock-3"), secret)
    claimed = [
        DVP.decode_log([bytes.fromhex(t[2:]) for t in x["topics"]], bytes.fromhex(x["data"][2:]))
        for x in receipt.logs
        if x["address"].lower() == address.lower()
    ]
    assert claimed[-1].args["preimage"] == secret  # revealed for the other chain's leg
    assert cash.read("balanceOf", cash.bob) == 400
    dvp_tx(chain, cash.alice, address, "lock", memo32("lock-4"), cash.bob, cash.address, 500, hashlock, deadline)
    with pytest.raises(TxReverted, match="lock not expired"):
        dvp_tx(chain, cash.alice, address, "refundLock", memo32("lock-4"))
    chain.rpc.call("evm_increaseTime", [120])
    chain.rpc.call("evm_mine", [])
    with pytest.raises(TxReverted, match="lock expired"):
        dvp_tx(chain, cash.bob, address, "claim", memo32("lock-4"), secret)
    dvp_tx(chain, cash.alice, address, "refundLock", memo32("lock-4"))
    assert cash.read("balanceOf", cash.alice) == 10_000 - 400
