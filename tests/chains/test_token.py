"""PermissionedToken on a real anvil node: every role and every refusal."""

from __future__ import annotations

import pytest
from eth_utils import keccak

from andchain.chains.contracts import memo32
from tests.chains.conftest import ROLE, TokenWorld, deploy_token

MEMO = memo32("INV-2026-0042")


def fund(token: TokenWorld, who: str, amount: int) -> None:
    token.tx(token.minter, "mint", who, amount, memo32("mint"))


def test_erc20_transfer_approve_and_transfer_from(token: TokenWorld):
    fund(token, token.alice, 1_000)
    receipt = token.tx(token.alice, "transfer", token.bob, 300)
    assert ("Transfer", {"sender": token.alice, "receiver": token.bob, "value": 300}) in token.events(receipt)
    token.tx(token.alice, "approve", token.minter, 200)
    assert token.read("allowance", token.alice, token.minter) == 200
    token.tx(token.minter, "transferFrom", token.alice, token.bob, 150)
    assert token.read("allowance", token.alice, token.minter) == 50
    assert (token.read("balanceOf", token.alice), token.read("balanceOf", token.bob)) == (550, 450)
    assert token.read("totalSupply") == 1_000
    assert token.refused(token.minter, "transferFrom", token.alice, token.bob, 51) == "insufficient allowance"
    assert token.refused(token.alice, "transfer", token.bob, 551) == "insufficient balance"
    assert (token.read("name"), token.read("symbol"), token.read("decimals")) == ("Bank USD Deposit Token", "USDD", 2)


def test_only_allowlisted_addresses_send_or_receive(token: TokenWorld):
    fund(token, token.alice, 100)
    assert token.refused(token.alice, "transfer", token.outsider, 1) == "not allowlisted"
    assert token.refused(token.minter, "mint", token.outsider, 1, MEMO) == "not allowlisted"
    token.tx(token.compliance, "setAllowlisted", token.outsider, True)
    token.tx(token.alice, "transfer", token.outsider, 1)
    token.tx(token.compliance, "setAllowlisted", token.alice, False)
    assert token.refused(token.alice, "transfer", token.bob, 1) == "not allowlisted"


def test_frozen_addresses_neither_send_nor_receive(token: TokenWorld):
    fund(token, token.alice, 100)
    fund(token, token.bob, 100)
    receipt = token.tx(token.compliance, "freeze", token.bob)
    assert ("Frozen", {"account": token.bob}) in token.events(receipt)
    assert token.refused(token.alice, "transfer", token.bob, 1) == "frozen"
    assert token.refused(token.bob, "transfer", token.alice, 1) == "frozen"
    assert token.refused(token.bob, "approve", token.alice, 1) == "frozen"
    assert token.refused(token.minter, "mint", token.bob, 1, MEMO) == "frozen"
    token.tx(token.compliance, "unfreeze", token.bob)
    token.tx(token.bob, "transfer", token.alice, 1)


def test_pause_stops_transfers_mints_and_burns_but_not_compliance(token: TokenWorld):
    fund(token, token.alice, 100)
    token.tx(token.pauser, "pause")
    assert token.read("paused") is True
    assert token.refused(token.alice, "transfer", token.bob, 1) == "paused"
    assert token.refused(token.minter, "mint", token.alice, 1, MEMO) == "paused"
    assert token.refused(token.alice, "redeem", 1, MEMO) == "paused"
    assert token.refused(token.minter, "burn", 1, MEMO) == "paused"
    token.tx(token.compliance, "setAllowlisted", token.outsider, True)
    token.tx(token.compliance, "freeze", token.alice)
    token.tx(token.compliance, "seizeAndBurn", token.alice, 10, keccak(text="court order 7"))
    token.tx(token.pauser, "unpause")
    token.tx(token.compliance, "unfreeze", token.alice)
    token.tx(token.alice, "transfer", token.bob, 1)
    assert token.read("totalSupply") == 90


def test_minters_mint_within_their_allowance_up_to_the_cap(ctx):
    token = deploy_token(ctx, cap=5_000)
    receipt = token.tx(token.minter, "mint", token.alice, 1_000, MEMO)
    assert ("Mint", {"minter": token.minter, "receiver": token.alice, "value": 1_000, "memo": MEMO}) in token.events(
        receipt
    )
    assert token.read("minterAllowance", token.minter) == 10**12 - 1_000
    assert token.refused(token.minter, "mint", token.alice, 4_001, MEMO) == "over supply cap"
    token.tx(token.master_minter, "configureMinter", token.minter, 10)
    assert token.refused(token.minter, "mint", token.alice, 11, MEMO) == "over minter allowance"
    token.tx(token.master_minter, "removeMinter", token.minter)
    assert token.refused(token.minter, "mint", token.alice, 1, MEMO) == "not a minter"
    assert token.refused(token.admin, "setSupplyCap", 999) == "cap below supply"
    token.tx(token.admin, "setSupplyCap", 1_000)
    assert token.read("supplyCap") == 1_000


@pytest.mark.parametrize(
    ("fn", "args", "reason"),
    [
        ("configureMinter", lambda t: (t.alice, 1), "not the master minter"),
        ("removeMinter", lambda t: (t.minter,), "not the master minter"),
        ("pause", lambda t: (), "not the pauser"),
        ("unpause", lambda t: (), "not the pauser"),
        ("setAllowlisted", lambda t: (t.outsider, True), "not compliance"),
        ("batchSetAllowlisted", lambda t: ([t.outsider], True), "not compliance"),
        ("freeze", lambda t: (t.bob,), "not compliance"),
        ("unfreeze", lambda t: (t.bob,), "not compliance"),
        ("seize", lambda t: (t.bob, t.alice, 1, MEMO), "not compliance"),
        ("seizeAndBurn", lambda t: (t.bob, 1, MEMO), "not compliance"),
        ("setRole", lambda t: (ROLE["PAUSER"], t.alice), "not the admin"),
        ("setSupplyCap", lambda t: (1,), "not the admin"),
        ("transferAdmin", lambda t: (t.alice,), "not the admin"),
        ("acceptAdmin", lambda t: (), "not the pending admin"),
        ("mint", lambda t: (t.alice, 1, MEMO), "not a minter"),
        ("burn", lambda t: (1, MEMO), "not a minter"),
    ],
)
def test_every_privileged_function_refuses_the_wrong_role(token: TokenWorld, fn, args, reason):
    # alice holds no role at all; the admin holds only the admin role after set-up.
    assert token.refused(token.alice, fn, *args(token)) == reason


def test_admin_moves_in_two_steps(token: TokenWorld):
    token.tx(token.admin, "transferAdmin", token.bob)
    assert token.read("admin") == token.admin
    assert token.refused(token.alice, "acceptAdmin") == "not the pending admin"
    token.tx(token.bob, "acceptAdmin")
    assert token.read("admin") == token.bob
    assert token.refused(token.admin, "setSupplyCap", 1) == "not the admin"
    assert token.refused(token.admin, "setRole", keccak(text="NOBODY"), token.bob) == "not the admin"
    assert token.refused(token.bob, "setRole", keccak(text="NOBODY"), token.alice) == "unknown role"


def test_transfer_with_memo_and_batches(token: TokenWorld):
    receipt = token.tx(token.minter, "batchMint", [token.alice, token.bob], [500, 70], [MEMO, MEMO])
    assert [n for n, _ in token.events(receipt)].count("Mint") == 2
    receipt = token.tx(token.alice, "transferWithMemo", token.bob, 25, MEMO)
    assert ("TransferWithMemo", {"sender": token.alice, "receiver": token.bob, "value": 25, "memo": MEMO}) in (
        token.events(receipt)
    )
    token.tx(token.alice, "batchTransfer", [token.bob, token.minter], [5, 10])
    assert (token.read("balanceOf", token.alice), token.read("balanceOf", token.bob)) == (460, 100)
    assert token.refused(token.alice, "batchTransfer", [token.bob], [1, 2]) == "length mismatch"
    assert token.refused(token.alice, "batchTransfer", [token.bob, token.outsider], [1, 1]) == "not allowlisted"
    assert token.read("balanceOf", token.bob) == 100  # the failed batch moved nothing


def test_redeem_burns_and_tells_the_bank(token: TokenWorld):
    fund(token, token.alice, 1_000)
    receipt = token.tx(token.alice, "redeem", 400, MEMO)
    assert ("Redeemed", {"holder": token.alice, "value": 400, "memo": MEMO}) in token.events(receipt)
    assert (token.read("balanceOf", token.alice), token.read("totalSupply")) == (600, 600)
    assert token.refused(token.alice, "redeem", 601, MEMO) == "insufficient balance"
    assert token.refused(token.alice, "redeem", 0, MEMO) == "amount is zero"


def test_seize_moves_or_burns_only_a_frozen_holders_tokens(token: TokenWorld):
    fund(token, token.alice, 1_000)
    order = keccak(text="lawful order 2026-11")
    assert token.refused(token.compliance, "seize", token.alice, token.minter, 1, order) == "holder not frozen"
    token.tx(token.compliance, "freeze", token.alice)
    assert token.refused(token.compliance, "seize", token.alice, token.outsider, 1, order) == "receiver not allowed"
    receipt = token.tx(token.compliance, "seize", token.alice, token.minter, 300, order)
    assert (
        "Seized",
        {"holder": token.alice, "receiver": token.minter, "value": 300, "burned": False, "reference": order},
    ) in token.events(receipt)
    token.tx(token.compliance, "seizeAndBurn", token.alice, 700, order)
    assert (token.read("balanceOf", token.alice), token.read("balanceOf", token.minter)) == (0, 300)
    assert token.read("totalSupply") == 300


def test_burn_from_needs_a_minter_the_holders_allowance_and_no_pause(token: TokenWorld):
    fund(token, token.alice, 1_000)
    assert token.refused(token.minter, "burnFrom", token.alice, 100, MEMO) == "insufficient allowance"
    token.tx(token.alice, "approve", token.minter, 300)
    assert token.refused(token.bob, "burnFrom", token.alice, 100, MEMO) == "not a minter"
    receipt = token.tx(token.minter, "burnFrom", token.alice, 250, MEMO)
    assert ("Burn", {"burner": token.alice, "value": 250, "memo": MEMO}) in token.events(receipt)
    assert (token.read("balanceOf", token.alice), token.read("totalSupply")) == (750, 750)
    assert token.read("allowance", token.alice, token.minter) == 50
    token.tx(token.pauser, "pause")
    assert token.refused(token.minter, "burnFrom", token.alice, 10, MEMO) == "paused"
