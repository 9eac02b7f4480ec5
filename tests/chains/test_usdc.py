"""The USDC stand-in behaves as USDC does where the bank and custodians touch it."""

from __future__ import annotations

import pytest

from andchain.chains.client import Call, TxReverted
from andchain.chains.usdc import USDC, deploy_stand_in, usdc_abi

ABI = usdc_abi()


@pytest.fixture
def usdc(ctx, chain):
    issuer, minter, alice, bob = (ctx.keys.create(label) for label in ("usdc:issuer", "m", "alice", "bob"))
    address = deploy_stand_in(chain, issuer, [minter])
    return chain, address, issuer, minter, alice, bob


def send(chain, address, sender, fn, *args):
    return chain.transact(sender, Call(address, ABI.encode_call(fn, *args)))


def refused(chain, address, sender, fn, *args) -> str:
    with pytest.raises(TxReverted) as caught:
        send(chain, address, sender, fn, *args)
    return caught.value.reason


def test_it_has_usdcs_name_symbol_and_six_decimals_and_is_adopted_not_deployed_twice(usdc, ctx):
    chain, address, issuer, minter, *_ = usdc
    assert [chain.read(address, ABI, f) for f in ("name", "symbol", "decimals", "currency")] == [
        "USD Coin",
        "USDC",
        6,
        "USD",
    ]
    assert deploy_stand_in(chain, issuer, [minter]) == address == chain.deployment(USDC)


def test_anyone_holds_it_and_a_minter_mints_within_its_allowance_and_burns_what_it_holds(usdc):
    chain, address, issuer, minter, alice, bob = usdc
    send(chain, address, minter, "mint", alice, 2_500_000)
    send(chain, address, alice, "transfer", bob, 1_000_000)  # no allow list: anyone holds USDC
    assert chain.read(address, ABI, "balanceOf", bob) == 1_000_000
    assert "not a minter" in refused(chain, address, alice, "mint", alice, 1)
    send(chain, address, bob, "transfer", minter, 1_000_000)
    send(chain, address, minter, "burn", 400_000)
    assert chain.read(address, ABI, "totalSupply") == 2_100_000
    send(chain, address, issuer, "configureMinter", alice, 5)
    assert "exceeds minterAllowance" in refused(chain, address, alice, "mint", alice, 6)


def test_a_blacklisted_address_neither_sends_nor_receives_and_a_pause_stops_transfers(usdc):
    chain, address, issuer, minter, alice, bob = usdc
    send(chain, address, minter, "mint", alice, 10)
    send(chain, address, issuer, "blacklist", bob)
    assert "blacklisted" in refused(chain, address, alice, "transfer", bob, 1)
    assert "blacklisted" in refused(chain, address, minter, "mint", bob, 1)
    send(chain, address, issuer, "unBlacklist", bob)
    send(chain, address, issuer, "pause")
    assert "paused" in refused(chain, address, alice, "transfer", bob, 1)
    send(chain, address, issuer, "unpause")
    send(chain, address, alice, "transfer", bob, 1)
    assert "not the blacklister" in refused(chain, address, alice, "blacklist", bob)


def test_transfer_from_spends_the_allowance_exactly(usdc):
    chain, address, _, minter, alice, bob = usdc
    send(chain, address, minter, "mint", alice, 100)
    send(chain, address, alice, "approve", bob, 60)
    send(chain, address, bob, "transferFrom", alice, bob, 60)
    assert "exceeds allowance" in refused(chain, address, bob, "transferFrom", alice, bob, 1)
    assert chain.read(address, ABI, "balanceOf", bob) == 60
