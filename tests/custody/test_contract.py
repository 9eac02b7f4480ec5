"""What every custodian behind the port must do, run against each: the reference custodian (a
process over HTTP) and the bank's own custody (`self`, in the bank's database on SQLite and on
PostgreSQL). The seam for custody later is proven here: the same tests, the same outcomes."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from andchain.chains.client import Call
from andchain.custody.port import CustodianRefused, Destination, TransferRequest, submit_once
from andchain.custody.states import TERMINAL, CustodyState
from tests.chains.conftest import start_public_node
from tests.custody.worlds import (
    ABI,
    BLOCKED,
    BTC,
    OUT,
    USDC,
    ReferenceWorld,
    SelfWorld,
    World,
    btc,
    request,
)


@pytest.fixture(scope="module")
def base_node(tmp_path_factory):
    node = start_public_node(tmp_path_factory.mktemp("base"))
    yield node
    node.stop()


@pytest.fixture(params=["reference", "self-sqlite", "self-postgresql"])
def world(request, tmp_path, base_node) -> Iterator[World]:
    made: World
    if request.param == "reference":
        made = ReferenceWorld(tmp_path, base_node)
    elif request.param == "self-sqlite":
        made = SelfWorld(tmp_path, base_node)
    else:
        server = request.getfixturevalue("postgres_server")
        from tests.conftest import _truncate

        _truncate(request.getfixturevalue("_postgres_engine"))
        made = SelfWorld(tmp_path, base_node, server.url)
    yield made
    made.close()


def test_a_deposit_is_seen_and_a_withdrawal_completes_on_chain_once(world):
    account, deposit = world.funded_account("acme", 50 * USDC)
    assert deposit.amount_minor == 50 * USDC and deposit.incoming
    sent = submit_once(world.custodian, request("wd-1", account.id, 20 * USDC), first_attempt=True)
    assert submit_once(world.custodian, request("wd-1", account.id, 20 * USDC)).id == sent.id  # a retry: found
    assert world.custodian.find("never-sent") is None
    done = world.until(sent.id, TERMINAL)
    assert done.state is CustodyState.COMPLETED and done.tx_hash and done.idempotency_key == "wd-1"
    assert world.held(OUT) == 20 * USDC
    balance = world.usdc_balance(account.id)
    assert balance.total_minor == balance.available_minor == 30 * USDC


def test_refusals_are_clear_and_move_nothing(world):
    account, _ = world.funded_account("initech", 5 * USDC)
    too_much = submit_once(world.custodian, request("over", account.id, 6 * USDC), first_attempt=True)
    blocked = submit_once(world.custodian, request("blocked", account.id, USDC, to=BLOCKED), first_attempt=True)
    assert world.until(too_much.id, TERMINAL).state is CustodyState.FAILED
    assert "insufficient funds" in (world.custodian.get(too_much.id).raw_sub_status or "")
    assert world.until(blocked.id, TERMINAL).state is CustodyState.REJECTED
    with pytest.raises(CustodianRefused, match="idempotency key was used"):
        world.custodian.withdraw(request("over", account.id, 1))
    with pytest.raises(CustodianRefused, match="40 hex digits"):
        world.custodian.withdraw(TransferRequest("bad", account.id, Destination(address="0x12"), "USDC", "base", 1))
    with pytest.raises(CustodianRefused, match="holds no ETH on ethereum"):
        world.custodian.deposit_address(account.id, "ETH", "ethereum")
    balance = world.usdc_balance(account.id)
    assert balance.total_minor == 5 * USDC and world.held(OUT) == 0


def test_an_internal_transfer_moves_between_two_accounts_and_is_not_also_a_deposit(world):
    acme, _ = world.funded_account("acme2", 10 * USDC)
    desk = world.custodian.create_account("desk", owner="desk", idempotency_key="acct-desk")
    moved = submit_once(
        world.custodian,
        TransferRequest("int-1", acme.id, Destination(account_id=desk.id), "USDC", "base", 4 * USDC),
        first_attempt=True,
    )
    assert world.until(moved.id, TERMINAL).state is CustodyState.COMPLETED
    desk_balance = world.usdc_balance(desk.id)
    assert desk_balance.total_minor == 4 * USDC
    # A later deposit to the desk, once recorded, means the scan went past the transfer's block.
    world.mint(world.custodian.deposit_address(desk.id, "USDC", "base").address, 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        incoming = [t for t in world.custodian.transfers().transfers if t.incoming]
        if any(t.amount_minor == 1 for t in incoming):
            break
        time.sleep(0.2)
    assert sorted((t.destination.account_id, t.amount_minor) for t in incoming if t.destination) == sorted(
        [(acme.id, 10 * USDC), (desk.id, 1)]
    )  # the two mints only: the internal transfer is not also a deposit


def test_a_transfer_the_token_refuses_fails_alone_and_the_others_go_on(world):
    account, _ = world.funded_account("hooli", 10 * USDC)
    shady = "0x" + "5b" * 20
    world.chain.transact(world.issuer, Call(world.usdc, ABI.encode_call("blacklist", shady)))
    refused = submit_once(world.custodian, request("to-shady", account.id, USDC, to=shady), first_attempt=True)
    fine = submit_once(world.custodian, request("to-out", account.id, USDC), first_attempt=True)
    done = world.until(refused.id, TERMINAL)
    assert done.state is CustodyState.FAILED and "blacklisted" in (done.raw_sub_status or "")
    assert world.until(fine.id, TERMINAL).state is CustodyState.COMPLETED
    assert world.held(shady) == 0 and world.held(OUT) == USDC


def test_bitcoin_is_booked_with_real_addresses_deposits_once_and_withdrawals_out_of_the_book(world):
    from andchain.custody.kept.bitcoin import checked_address

    acme = world.custodian.create_account("acme-btc", owner="acme", idempotency_key="acct-acme-btc")
    desk = world.custodian.create_account("desk-btc", owner="desk", idempotency_key="acct-desk-btc")
    address = world.custodian.deposit_address(acme.id, "BTC", "bitcoin").address
    assert address.startswith("bcrt1q") and checked_address(address, "regtest") == address
    assert address == world.custodian.deposit_address(acme.id, "BTC", "bitcoin").address
    for reference in ("F" * 64 + ":0", "f" * 64 + ":00"):  # the same output reported twice is one deposit
        world.credit(acme.id, "0.5", reference)
    balances = {b.asset: b for b in world.custodian.balances(acme.id)}
    assert balances["BTC"].total_minor == BTC // 2 and balances["USDC"].total_minor == 0
    sent = submit_once(world.custodian, btc("btc-1", acme.id, BTC // 5), first_attempt=True)
    inside = submit_once(
        world.custodian,
        TransferRequest("btc-2", acme.id, Destination(account_id=desk.id), "BTC", "bitcoin", BTC // 10),
        first_attempt=True,
    )
    # 0.25 would pass against the 0.5 deposited: it fails only because the two before are booked
    too_much = submit_once(world.custodian, btc("btc-3", acme.id, BTC // 4), first_attempt=True)
    out = world.until(sent.id, TERMINAL)
    assert out.state is CustodyState.COMPLETED and out.tx_hash and len(out.tx_hash) == 64
    assert world.until(inside.id, TERMINAL).state is CustodyState.COMPLETED
    assert world.until(too_much.id, TERMINAL).state is CustodyState.FAILED
    totals = {a.id: {b.asset: b.total_minor for b in world.custodian.balances(a.id)}["BTC"] for a in (acme, desk)}
    assert totals == {acme.id: BTC // 5, desk.id: BTC // 10}  # 0.5 - 0.2 - 0.1, and 0.1
    incoming = [t for t in world.custodian.transfers().transfers if t.incoming and t.asset == "BTC"]
    assert [(t.amount_minor, t.tx_hash) for t in incoming] == [(BTC // 2, "f" * 64 + ":0")]


def test_a_bitcoin_address_is_checked_as_bitcoin_checks_it(world):
    account = world.custodian.create_account("badaddr", owner="x", idempotency_key="acct-badaddr")
    for n, address in enumerate(
        [
            "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",  # valid, but mainnet: this custodian is on regtest
            "bcrt1q0xcqpzrky6eff2g52qdye53xkk9jxkvrl4xfg6",  # one character off: the checksum fails
            "0x" + "5a" * 20,  # an Ethereum address
            "",
        ]
    ):
        with pytest.raises(CustodianRefused, match="not a valid Bitcoin regtest address"):
            world.custodian.withdraw(btc(f"bad-btc-{n}", account.id, 1, to=address))
    assert world.custodian.transfers().transfers == []  # nothing was recorded for any of them


def test_what_a_stranger_sends_to_an_account_is_a_deposit_and_a_zero_transfer_is_nothing(world):
    account = world.custodian.create_account("stranger-target", owner="acme", idempotency_key="acct-st")
    address = world.custodian.deposit_address(account.id, "USDC", "base").address
    stranger = world.bank.keys.create("stranger")
    world.bank.fund_gas("base", [stranger])
    world.mint(stranger, 3 * USDC)
    for amount in (0, 2 * USDC, 0):  # zero transfers around a real one, from a holder the custodian never saw
        world.chain.transact(stranger, Call(world.usdc, ABI.encode_call("transfer", address, amount)))
    world.chain.transact(stranger, Call(world.usdc, ABI.encode_call("transfer", stranger, USDC)))  # to itself
    # A later deposit recorded means the scan went past the stranger's blocks.
    world.mint(address, 1)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        incoming = [t for t in world.custodian.transfers().transfers if t.incoming]
        if any(t.amount_minor == 1 for t in incoming):
            break
        time.sleep(0.2)
    assert sorted(t.amount_minor for t in incoming) == [1, 2 * USDC]
    balance = world.usdc_balance(account.id)
    assert balance.total_minor == 2 * USDC + 1


def test_native_eth_is_held_in_the_book_withdrawn_on_chain_once_and_gas_stays_apart(world):
    ether = 10**18
    account = world.custodian.create_account("ethan", owner="ethan", idempotency_key="acct-ethan")
    desk = world.custodian.create_account("desk-eth", owner="desk", idempotency_key="acct-desk-eth")
    address = world.custodian.deposit_address(account.id, "ETH", "base").address
    world.chain.transact(world.minter, Call(address, b"", value=2 * ether))  # a stranger sends 2 ETH
    world.chain.transact(world.minter, Call(address, b"", value=0))  # and nothing: no deposit

    def eth(account_id: str):
        return next(b for b in world.custodian.balances(account_id) if b.asset == "ETH")

    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and eth(account.id).total_minor < 2 * ether:
        time.sleep(0.2)
    assert eth(account.id).total_minor == eth(account.id).available_minor == 2 * ether
    deposits = [t for t in world.custodian.transfers(limit=1000).transfers if t.incoming and t.asset == "ETH"]
    assert [(d.amount_minor, d.state) for d in deposits] == [(2 * ether, CustodyState.COMPLETED)]

    before = world.chain.balance(OUT)
    out = TransferRequest("eth-1", account.id, Destination(address=OUT), "ETH", "base", ether // 2)
    sent = submit_once(world.custodian, out, first_attempt=True)
    assert world.until(sent.id, TERMINAL).state is CustodyState.COMPLETED
    assert world.chain.balance(OUT) - before == ether // 2  # exactly: the gas was paid beside it
    inside = TransferRequest("eth-2", account.id, Destination(account_id=desk.id), "ETH", "base", ether // 4)
    moved = submit_once(world.custodian, inside, first_attempt=True)
    assert world.until(moved.id, TERMINAL).state is CustodyState.COMPLETED
    over = TransferRequest("eth-3", account.id, Destination(address=OUT), "ETH", "base", 5 * ether)
    refused = submit_once(world.custodian, over, first_attempt=True)
    assert world.until(refused.id, TERMINAL).state is CustodyState.FAILED
    time.sleep(1.5)  # the deposit scanner passes over the internal transfer's block: not a deposit
    assert eth(account.id).total_minor == 2 * ether - ether // 2 - ether // 4
    assert eth(desk.id).total_minor == ether // 4
    assert world.chain.balance(address) >= eth(account.id).total_minor  # the gas was never the client's
    deposits = [t for t in world.custodian.transfers(limit=1000).transfers if t.incoming and t.asset == "ETH"]
    assert len(deposits) == 1


def test_value_never_leaves_the_book_through_an_accounts_own_address(world):
    account = world.custodian.create_account("addr-a", owner="addr-a", idempotency_key="acct-addr-a")
    other = world.custodian.create_account("addr-b", owner="addr-b", idempotency_key="acct-addr-b")
    address = world.custodian.deposit_address(other.id, "ETH", "base").address
    with pytest.raises(CustodianRefused, match="internal transfer"):
        world.custodian.withdraw(TransferRequest("to-own", account.id, Destination(address=address), "ETH", "base", 1))
    with pytest.raises(CustodianRefused, match="another account"):
        world.custodian.transfer(
            TransferRequest("to-self", account.id, Destination(account_id=account.id), "ETH", "base", 1)
        )
