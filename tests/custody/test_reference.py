"""The reference custodian as a separate process on a node with a public network's profile: the
bank reaches it only through the `reference` adapter, as it would a third party."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from andchain.chains.client import Call
from andchain.chains.usdc import deploy_stand_in, usdc_abi
from andchain.custody.adapters.reference import ReferenceCustodianAdapter
from andchain.custody.port import CustodianRefused, Destination, TransferRequest, WebhookRejected, submit_once
from andchain.custody.states import TERMINAL, CustodyState
from andchain.devtools.postgres import free_port
from andchain.money import DEFAULT_ASSETS, AssetRegistry
from tests.chains.conftest import make_context, start_public_node
from tests.events.conftest import Receiver

OUT = "0x" + "5a" * 20  # the client's own wallet elsewhere
BLOCKED = "0x" + "bad0" * 10
USDC = 1_000_000  # one USDC in minor units
ABI = usdc_abi()


@pytest.fixture(scope="module")
def base_node(tmp_path_factory):
    node = start_public_node(tmp_path_factory.mktemp("base"))
    yield node
    node.stop()


class Service:
    """`andchain custodian serve` in its own process, started and killed like one."""

    def __init__(self, env: dict[str, str], port: int, log: Path) -> None:
        self.env, self.port, self.log = env, port, log
        self.process: subprocess.Popen[bytes] | None = None

    def start(self, failpoint: str | None = None) -> None:
        env = {**self.env, "ANDCHAIN_FAILPOINT": failpoint} if failpoint else self.env
        with open(self.log, "ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "andchain.cli", "custodian", "serve"], env=env, stdout=log, stderr=log
            )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/health", timeout=1).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            assert self.process.poll() is None, self.log.read_text()[-3000:]
            time.sleep(0.1)
        raise AssertionError("the custodian did not start: " + self.log.read_text()[-3000:])

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "andchain.cli", "custodian", *args],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )


class World:
    def __init__(self, tmp_path: Path, node) -> None:
        self.bank = make_context(tmp_path / "bank", node)
        self.chain = self.bank.chain("base")
        self.issuer = self.bank.keys.create("usdc:issuer")
        self.minter = self.bank.keys.create("usdc:minter")
        self.bank.fund_gas("base", [self.issuer, self.minter])
        self.usdc = deploy_stand_in(self.chain, self.issuer, [self.minter])
        self.receiver = Receiver().start()
        port = free_port()
        var = tmp_path / "var"
        env = {k: v for k, v in os.environ.items() if not k.startswith("ANDCHAIN_")}
        env.update(
            {
                "ANDCHAIN_DATA_DIR": str(var),
                "ANDCHAIN_NETWORKS__BASE__RPC_URL": node.network.rpc_url,
                "ANDCHAIN_KEYSTORE__SCRYPT_N": "1024",
                "ANDCHAIN_CUSTODIAN__PORT": str(port),
                "ANDCHAIN_CUSTODIAN__POLL_S": "0.1",
                "ANDCHAIN_CUSTODIAN__TOKENS": json.dumps({"USDC@base": self.usdc}),
                "ANDCHAIN_CUSTODIAN__APPROVAL_ABOVE": json.dumps({"USDC": "100"}),
                "ANDCHAIN_CUSTODIAN__WEBHOOK_URL": self.receiver.url,
                "ANDCHAIN_CUSTODIAN__BLOCKED_ADDRESSES": json.dumps([BLOCKED]),
            }
        )
        self.service = Service(env, port, tmp_path / "custodian.log")
        self.service.start()
        directory = var / "custodian"
        api_key = (directory / "api-key").read_text().strip()
        self.webhook_secret = (directory / "webhook-secret").read_text().strip()
        self.service_key = f"Bearer {api_key}"
        self.custodian = ReferenceCustodianAdapter(
            base_url=f"http://127.0.0.1:{port}",
            api_key=api_key,
            webhook_secret=self.webhook_secret,
            assets=AssetRegistry(DEFAULT_ASSETS),
        )

    def sign(self, timestamp: str, body: bytes) -> str:
        # As the custodian signs, computed here from its documented recipe.
        return (
            "v1=" + hmac.new(self.webhook_secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
        )

    def close(self) -> None:
        self.service.stop()
        self.receiver.stop()
        self.bank.close()

    def mint(self, address: str, amount: int) -> None:
        self.chain.transact(self.minter, Call(self.usdc, ABI.encode_call("mint", address, amount)))

    def usdc_balance(self, account_id: str):
        return next(b for b in self.custodian.balances(account_id) if b.asset == "USDC")

    def held(self, address: str) -> int:
        return int(self.chain.read(self.usdc, ABI, "balanceOf", address))

    def until(self, transfer_id: str, states: set[CustodyState], seconds: float = 60):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            seen = self.custodian.get(transfer_id)
            if seen.state in states:
                return seen
            time.sleep(0.2)
        raise AssertionError(f"{transfer_id} is {seen.state}, not {states}")

    def funded_account(self, name: str, amount: int):
        account = self.custodian.create_account(name, owner=name, idempotency_key=f"acct-{name}")
        address = self.custodian.deposit_address(account.id, "USDC", "base").address
        self.mint(address, amount)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            balance = self.usdc_balance(account.id)
            deposits = [
                t
                for t in self.custodian.transfers().transfers
                if t.incoming
                and t.state is CustodyState.COMPLETED
                and t.destination == Destination(account_id=account.id)
            ]
            if balance.total_minor == amount and deposits:
                return account, deposits[0]
            time.sleep(0.2)
        raise AssertionError("the deposit was not recorded")


@pytest.fixture
def world(tmp_path, base_node) -> Iterator[World]:
    made = World(tmp_path, base_node)
    yield made
    made.close()


def request(key: str, source: str, amount: int, to: str = OUT) -> TransferRequest:
    return TransferRequest(key, source, Destination(address=to), "USDC", "base", amount)


def test_a_deposit_is_recorded_and_a_withdrawal_completes_on_chain_once_with_signed_webhooks(world):
    account, deposit = world.funded_account("acme", 50 * USDC)
    assert deposit.amount_minor == 50 * USDC and deposit.tx_hash
    sent = submit_once(world.custodian, request("wd-1", account.id, 20 * USDC), first_attempt=True)
    assert submit_once(world.custodian, request("wd-1", account.id, 20 * USDC)).id == sent.id  # a retry: found
    done = world.until(sent.id, TERMINAL)
    assert done.state is CustodyState.COMPLETED and done.tx_hash
    assert world.held(OUT) == 20 * USDC
    balance = world.usdc_balance(account.id)
    assert balance.total_minor == balance.available_minor == 30 * USDC
    # every state change came as a webhook that verifies, and they never go backwards
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        events = [world.custodian.verify_webhook(r.headers, r.body) for r in world.receiver.delivered()]
        mine = [e.transfer.state for e in events if e.transfer is not None and e.transfer.id == sent.id]
        if CustodyState.COMPLETED in mine:
            break
        time.sleep(0.2)
    # one report per state, in the order they happened (the custodian delivers a transfer's
    # reports one after the other)
    assert mine == [
        CustodyState.CREATED,
        CustodyState.SCREENING,
        CustodyState.SIGNING,
        CustodyState.BROADCASTING,
        CustodyState.CONFIRMING,
        CustodyState.COMPLETED,
    ]
    assert len({e.id for e in events}) == len(events)


def test_above_the_threshold_a_withdrawal_waits_for_the_custodians_approver(world):
    account, _ = world.funded_account("globex", 400 * USDC)
    approved = submit_once(world.custodian, request("big-1", account.id, 150 * USDC), first_attempt=True)
    rejected = submit_once(world.custodian, request("big-2", account.id, 120 * USDC), first_attempt=True)
    cancelled = submit_once(world.custodian, request("big-3", account.id, 101 * USDC), first_attempt=True)
    for transfer in (approved, rejected, cancelled):
        world.until(transfer.id, {CustodyState.AWAITING_APPROVAL})
    balance = world.usdc_balance(account.id)
    assert balance.total_minor == 400 * USDC and balance.available_minor == 29 * USDC  # held while they wait
    assert world.service.cli("approve", approved.id).returncode == 0
    result = world.service.cli("reject", rejected.id, "--reason", "not the client's usual address")
    assert result.returncode == 0 and "rejected" in result.stdout
    assert world.custodian.cancel(cancelled.id).state is CustodyState.CANCELLED
    assert world.until(approved.id, TERMINAL).state is CustodyState.COMPLETED
    refused = world.custodian.get(rejected.id)
    assert refused.state is CustodyState.REJECTED and refused.raw_sub_status == "not the client's usual address"
    assert world.held(OUT) == 150 * USDC
    again = world.service.cli("approve", rejected.id)
    assert again.returncode != 0 and "rejected" in (again.stdout + again.stderr)


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
    bad_key = ReferenceCustodianAdapter(
        base_url=str(world.custodian.http.client.base_url).rstrip("/"),
        api_key="wrong",
        webhook_secret="x",
        assets=AssetRegistry(DEFAULT_ASSETS),
    )
    with pytest.raises(CustodianRefused, match="401"):
        bad_key.balances(account.id)
    balance = world.usdc_balance(account.id)
    assert balance.total_minor == 5 * USDC and world.held(OUT) == 0


@pytest.mark.parametrize("failpoint", ["custodian:after_sign", "custodian:after_broadcast"])
def test_a_custodian_killed_mid_transfer_sends_it_once_after_its_restart(world, failpoint):
    account, _ = world.funded_account("umbrella", 10 * USDC)
    world.service.stop()
    world.service.start(failpoint=failpoint)
    sent = submit_once(world.custodian, request("crash-1", account.id, 4 * USDC), first_attempt=True)
    assert world.service.process is not None
    world.service.process.wait(timeout=60)  # it killed itself at the failpoint
    assert world.service.process.returncode == -signal.SIGKILL
    world.service.start()
    assert world.until(sent.id, TERMINAL).state is CustodyState.COMPLETED
    assert world.held(OUT) == 4 * USDC
    balance = world.usdc_balance(account.id)
    assert balance.total_minor == 6 * USDC


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


def test_a_float_amount_is_refused_by_the_service_and_forged_or_stale_webhooks_by_the_adapter(world):
    account, _ = world.funded_account("pied", USDC)
    answer = httpx.post(
        f"{str(world.custodian.http.client.base_url).rstrip('/')}/v1/transfers",
        headers={"Authorization": world.service_key, "Idempotency-Key": "float-1"},
        json={
            "source_account": account.id,
            "destination": {"address": OUT},
            "asset": "USDC",
            "network": "base",
            "amount": 0.1,
        },
    )
    assert answer.status_code == 422 and answer.json()["code"] == "invalid_amount"
    body = b'{"id":"x:1","type":"transfer.updated"}'
    now = str(int(time.time()))
    good = world.sign(now, body)
    assert (
        world.custodian.verify_webhook({"X-Custodian-Timestamp": now, "X-Custodian-Signature": good}, body).id == "x:1"
    )
    for headers in (
        {"X-Custodian-Timestamp": now, "X-Custodian-Signature": good.replace("v1=", "v1=0")},
        {
            "X-Custodian-Timestamp": str(int(time.time()) - 3600),
            "X-Custodian-Signature": world.sign(str(int(time.time()) - 3600), body),
        },
        {"X-Custodian-Timestamp": "²", "X-Custodian-Signature": good},
        {"X-Custodian-Timestamp": "9" * 5000, "X-Custodian-Signature": good},
    ):
        with pytest.raises(WebhookRejected):
            world.custodian.verify_webhook(headers, body)


REGTEST_OUT = "bcrt1q0xcqpzrky6eff2g52qdye53xkk9jxkvrl4xfg5"  # the P2WPKH of key 0x01..01 on regtest
BTC = 100_000_000  # one bitcoin in satoshis


def btc(key: str, source: str, amount: int, to: str = REGTEST_OUT) -> TransferRequest:
    return TransferRequest(key, source, Destination(address=to), "BTC", "bitcoin", amount)


def test_bitcoin_is_booked_with_real_addresses_deposits_once_and_withdrawals_out_of_the_book(world):
    from andchain.custody.reference.bitcoin import checked_address

    acme = world.custodian.create_account("acme-btc", owner="acme", idempotency_key="acct-acme-btc")
    desk = world.custodian.create_account("desk-btc", owner="desk", idempotency_key="acct-desk-btc")
    address = world.custodian.deposit_address(acme.id, "BTC", "bitcoin").address
    assert address.startswith("bcrt1q") and checked_address(address, "regtest") == address
    assert address == world.custodian.deposit_address(acme.id, "BTC", "bitcoin").address
    for _ in range(2):  # the same deposit reported twice is one deposit
        done = world.service.cli("credit", acme.id, "0.5", "--reference", "f" * 64)
        assert done.returncode == 0, done.stderr
    balances = {b.asset: b for b in world.custodian.balances(acme.id)}
    assert balances["BTC"].total_minor == BTC // 2 and balances["USDC"].total_minor == 0
    sent = submit_once(world.custodian, btc("btc-1", acme.id, BTC // 5), first_attempt=True)
    inside = submit_once(
        world.custodian,
        TransferRequest("btc-2", acme.id, Destination(account_id=desk.id), "BTC", "bitcoin", BTC // 10),
        first_attempt=True,
    )
    too_much = submit_once(world.custodian, btc("btc-3", acme.id, BTC), first_attempt=True)
    out = world.until(sent.id, TERMINAL)
    assert out.state is CustodyState.COMPLETED and out.tx_hash and len(out.tx_hash) == 64
    assert world.until(inside.id, TERMINAL).state is CustodyState.COMPLETED
    assert world.until(too_much.id, TERMINAL).state is CustodyState.FAILED
    totals = {a.id: {b.asset: b.total_minor for b in world.custodian.balances(a.id)}["BTC"] for a in (acme, desk)}
    assert totals == {acme.id: BTC // 5, desk.id: BTC // 10}  # 0.5 - 0.2 - 0.1, and 0.1
    incoming = [t for t in world.custodian.transfers().transfers if t.incoming and t.asset == "BTC"]
    assert [(t.amount_minor, t.tx_hash) for t in incoming] == [(BTC // 2, "f" * 64)]


@pytest.mark.parametrize(
    "address",
    [
        "bc1qw508d6qejxtdg4y5r3zarvary0c5xw7kv8f3t4",  # valid, but mainnet: this custodian is on regtest
        "bcrt1q0xcqpzrky6eff2g52qdye53xkk9jxkvrl4xfg6",  # one character off: the checksum fails
        "0x" + "5a" * 20,  # an Ethereum address
        "",
    ],
)
def test_a_bitcoin_address_is_checked_as_bitcoin_checks_it(world, address):
    account = world.custodian.create_account("badaddr", owner="x", idempotency_key="acct-badaddr")
    with pytest.raises(CustodianRefused, match="not a valid Bitcoin regtest address"):
        world.custodian.withdraw(btc("bad-btc", account.id, 1, to=address))
