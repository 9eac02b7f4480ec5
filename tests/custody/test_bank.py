"""The bank's side of custody against the reference custodian running as a process of its own:
deposits credited to positions, withdrawals, internal transfers and stablecoin conversions as
operations with their ledger holds, and the faults of the issue (a timeout after the custodian
accepted, webhooks twice and out of order, a restart mid-transfer, a rejected approval), with
reconcile clean after each. On SQLite and PostgreSQL."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator

import httpx
import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from andchain.custody.port import DESK, CustodianUnavailable
from andchain.custody.reconcile import reconcile_custodians
from andchain.custody.service import (
    CONVERSION_ACCOUNT,
    CustodyHandler,
    CustodyService,
    custody_key,
    holdings_account,
    position_account,
)
from andchain.custody.states import CustodyState
from andchain.ops.core import Operation, OpStatus
from andchain.ops.worker import Worker
from andchain.tokens.model import dda_account
from andchain.tokens.moves import Moves
from andchain.tokens.service import TokenService
from tests.chains.conftest import start_public_node
from tests.custody.worlds import USDC, ReferenceWorld

NAME = "reference"


@pytest.fixture(scope="module")
def base_node(tmp_path_factory):
    node = start_public_node(tmp_path_factory.mktemp("base"))
    yield node
    node.stop()


class Faults(httpx.BaseTransport):
    """The wire between the bank and the custodian: the next transfer request reaches the custodian,
    and its answer is lost (a timeout after the custodian accepted)."""

    def __init__(self) -> None:
        self.inner = httpx.HTTPTransport()
        self.lose_next_answer = False
        self.transfer_posts = 0

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        response = self.inner.handle_request(request)
        if request.method == "POST" and request.url.path.startswith("/v1/transfers"):
            self.transfer_posts += 1
            if self.lose_next_answer:
                self.lose_next_answer = False
                response.read()
                response.close()
                raise httpx.ReadTimeout("the answer was lost", request=request)
        return response


class Bank:
    def __init__(self, world: ReferenceWorld, faults: Faults) -> None:
        self.world = world
        self.ctx = world.bank
        self.faults = faults
        self.tokens = TokenService(self.ctx)
        self.service = CustodyService(self.ctx, custodians={NAME: world.custodian}, tokens=self.tokens)
        self.worker = Worker(self.tokens.ops, [CustodyHandler(self.service)])

    def client(self, name: str) -> tuple[str, str]:
        """A client with its own wallet on base registered and verified; (client id, address)."""
        client = self.tokens.onboard(name)
        moves = Moves(self.tokens)
        account = Account.create()
        nonce, message = moves.challenge(client.id, "base")
        signature = Account.sign_message(encode_defunct(text=message), account.key).signature.hex()
        return client.id, moves.register(client.id, "base", nonce, account.address, signature)

    def deposit(self, owner: str, amount: int) -> None:
        """USDC sent to the owner's deposit address; the custodian's report credits the position."""
        before = self.position(owner)
        address = self.service.deposit_address(NAME, owner, "USDC", "base").address
        self.world.mint(address, amount)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            self.service.poll(NAME)
            if self.position(owner) == before + amount:
                return
            time.sleep(0.2)
        seen = self.world.custodian.transfers(limit=1000).transfers
        raise AssertionError(
            f"deposit not credited: {self.position(owner)}; the custodian reports {seen}; "
            f"accounts {self.service.accounts()}; cursor {self.service.cursor(NAME)}"
        )

    def position(self, owner: str, asset: str = "USDC") -> int:
        try:
            return self.ctx.ledger.account(position_account(NAME, owner, asset)).balance_posted
        except Exception:
            return 0

    def run(self, op: Operation, seconds: float = 90) -> Operation:
        """The worker until the operation ends (or stops for an operator)."""

        def done() -> bool:
            current = self.tokens.ops.get(op.id)
            return current.terminal or current.status == OpStatus.NEEDS_ATTENTION

        self.worker.run(seconds=seconds, idle_sleep_s=0.05, until=done)
        return self.tokens.ops.get(op.id)

    def step(self, op: Operation) -> Operation:
        self.service.step(self.tokens.ops.get(op.id))
        return self.tokens.ops.get(op.id)

    def clean(self) -> dict:
        section, findings = reconcile_custodians(self.service)
        broken = [f for f in findings if not f.ok]
        assert not broken, broken
        return section

    def transfers_for(self, op: Operation) -> list:
        key = custody_key(op.id)
        return [t for t in self.world.custodian.transfers(limit=1000).transfers if t.idempotency_key == key]

    def until_state(self, op: Operation, state: CustodyState, seconds: float = 60) -> str:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            found = self.transfers_for(op)
            if found and found[0].state is state:
                return found[0].id
            time.sleep(0.2)
        raise AssertionError(f"no transfer in {state}: {self.transfers_for(op)}")


def usdc_row(section: dict) -> dict:
    return next(row for row in section[NAME]["accounts"] if row["asset"] == "USDC")


@pytest.fixture(params=["sqlite", "postgresql"])
def bank(request, tmp_path, base_node) -> Iterator[Bank]:
    url = None
    if request.param == "postgresql":
        server = request.getfixturevalue("postgres_server")
        from tests.conftest import _truncate

        _truncate(request.getfixturevalue("_postgres_engine"))
        url = server.url
    faults = Faults()
    world = ReferenceWorld(tmp_path, base_node, url, timeout_s=3.0, transport=faults)
    made = Bank(world, faults)
    yield made
    world.close()


def test_a_deposit_is_credited_once_and_a_withdrawal_posts_its_hold(bank):
    client, address = bank.client("alice")
    bank.deposit(client, 80 * USDC)
    # Every report again (the poll from the start, the webhooks the custodian sent): nothing twice.
    bank.service._save_cursor(NAME, None)
    bank.service.poll(NAME)
    for hook in list(bank.world.receiver.requests):
        bank.service.webhook(NAME, hook.headers, hook.body)
    assert bank.position(client) == 80 * USDC
    holdings = bank.ctx.ledger.account(holdings_account(NAME, "USDC"))
    assert -holdings.balance_posted == 80 * USDC
    section = bank.clean()
    assert section[NAME]["ok"] and usdc_row(section)["custodian_total"] == "80.000000"

    op = bank.service.withdraw(NAME, client, "USDC", "base", 30 * USDC, address, "w-1")
    assert bank.ctx.ledger.account(position_account(NAME, client, "USDC")).available == 50 * USDC
    # The same key and request: the same operation; another request under it: refused.
    assert bank.service.withdraw(NAME, client, "USDC", "base", 30 * USDC, address, "w-1").id == op.id
    with pytest.raises(Exception, match="already used"):
        bank.service.withdraw(NAME, client, "USDC", "base", 31 * USDC, address, "w-1")
    bank.clean()  # in flight, not a break
    done = bank.run(op)
    assert done.status == OpStatus.SUCCEEDED, (done.error_code, done.error_message)
    assert done.result["tx_hash"]
    assert bank.world.held(address) == 30 * USDC
    assert bank.position(client) == 50 * USDC
    assert len(bank.transfers_for(op)) == 1 and bank.faults.transfer_posts == 1
    section = bank.clean()
    assert usdc_row(section)["custodian_total"] == "50.000000"


def test_refusals_lose_nothing(bank):
    client, address = bank.client("bob")
    bank.deposit(client, 10 * USDC)
    with pytest.raises(Exception, match=r"insufficient|exceeds"):
        bank.service.withdraw(NAME, client, "USDC", "base", 11 * USDC, address, "too-much")
    with pytest.raises(Exception, match="not an address"):
        bank.service.withdraw(NAME, client, "USDC", "base", USDC, "0x" + "12" * 20, "elsewhere")
    with pytest.raises(Exception, match="no custodian"):
        bank.service.withdraw("nobody", client, "USDC", "base", USDC, address, "nobody")
    with pytest.raises(Exception, match="positive"):
        bank.service.withdraw(NAME, client, "USDC", "base", 0, address, "zero")
    assert bank.tokens.ops.find_by_key("too-much") is None
    assert bank.position(client) == 10 * USDC
    bank.clean()


def test_a_withdrawal_not_yet_sent_when_its_client_is_frozen_never_leaves(bank):
    from andchain.compliance.enforcement import Enforcement

    client, address = bank.client("mallory")
    bank.deposit(client, 10 * USDC)
    op = bank.service.withdraw(NAME, client, "USDC", "base", 4 * USDC, address, "w-frozen")
    Enforcement(bank.tokens).freeze(client, reference="ORDER-W", authority="court", by="test")
    with pytest.raises(Exception, match="frozen"):
        bank.service.withdraw(NAME, client, "USDC", "base", USDC, address, "w-after")
    done = bank.run(op)
    assert (done.status, done.error_code) == (OpStatus.FAILED, "party_frozen")
    assert bank.transfers_for(op) == []  # nothing was sent
    assert bank.ctx.ledger.account(position_account(NAME, client, "USDC")).available == 10 * USDC


def test_a_timeout_after_the_custodian_accepted_sends_nothing_twice(bank):
    client, address = bank.client("carol")
    bank.deposit(client, 20 * USDC)
    op = bank.service.withdraw(NAME, client, "USDC", "base", 5 * USDC, address, "w-timeout")
    bank.faults.lose_next_answer = True
    with pytest.raises(CustodianUnavailable):
        bank.step(op)
    assert bank.faults.transfer_posts == 1 and len(bank.transfers_for(op)) == 1  # accepted, answer lost
    current = bank.tokens.ops.get(op.id)
    assert current.state["custody"] == {"submitting": True}
    with pytest.raises(Exception, match=r"in flight|already sent"):
        bank.worker.cancel(op.id)
    done = bank.run(op)
    assert done.status == OpStatus.SUCCEEDED
    assert bank.faults.transfer_posts == 1, "found by its key, never sent again"
    assert bank.world.held(address) == 5 * USDC
    bank.clean()


def test_webhooks_twice_and_out_of_order_never_move_a_transfer_back(bank):
    client, address = bank.client("dave")
    bank.deposit(client, 20 * USDC)
    op = bank.service.withdraw(NAME, client, "USDC", "base", 7 * USDC, address, "w-hooks")
    op = bank.step(op)
    transfer_id = op.state["custody"]["transfer_id"]
    bank.until_state(op, CustodyState.COMPLETED)
    deadline = time.monotonic() + 30
    hooks: list = []
    while time.monotonic() < deadline:
        hooks = [h for h in bank.world.receiver.requests if json.loads(h.body)["transfer"]["id"] == transfer_id]
        if any(json.loads(h.body)["transfer"]["state"] == "completed" for h in hooks):
            break
        time.sleep(0.2)
    states = [json.loads(h.body)["transfer"]["state"] for h in hooks]
    assert states[-1] == "completed" and len(states) >= 2, states
    # The last first, then all of them again, oldest first: completed stays completed.
    for hook in [hooks[-1], *hooks, *hooks]:
        bank.service.webhook(NAME, hook.headers, hook.body)
    current = bank.tokens.ops.get(op.id)
    assert current.status == OpStatus.SUCCEEDED
    assert current.state["custody"]["state"] == "completed"
    assert bank.position(client) == 13 * USDC
    bank.step(op)  # a poll after the end changes nothing
    assert bank.position(client) == 13 * USDC
    history = [h.status for h in bank.tokens.ops.history(op.id)]
    assert history.count("succeeded") == 1
    bank.clean()


def test_a_restart_of_the_custodian_mid_transfer(bank):
    client, address = bank.client("erin")
    bank.deposit(client, 20 * USDC)
    op = bank.service.withdraw(NAME, client, "USDC", "base", 3 * USDC, address, "w-restart")
    bank.step(op)
    bank.world.service.process.kill()
    bank.world.service.process.wait()
    with pytest.raises(CustodianUnavailable):
        bank.step(op)
    assert bank.tokens.ops.get(op.id).status == OpStatus.SUBMITTED
    bank.world.service.start()
    done = bank.run(op)
    assert done.status == OpStatus.SUCCEEDED
    assert len(bank.transfers_for(op)) == 1
    assert bank.world.held(address) == 3 * USDC
    bank.clean()


def test_a_rejected_approval_voids_the_hold(bank):
    client, address = bank.client("frank")
    bank.deposit(client, 500 * USDC)
    op = bank.service.withdraw(NAME, client, "USDC", "base", 150 * USDC, address, "w-big")  # above 100: approval
    bank.step(op)
    transfer_id = bank.until_state(op, CustodyState.AWAITING_APPROVAL)
    bank.step(op)
    assert bank.tokens.ops.get(op.id).state["custody"]["state"] == "awaiting_approval"
    assert bank.ctx.ledger.account(position_account(NAME, client, "USDC")).available == 350 * USDC
    done = bank.world.service.cli("reject", transfer_id, "--reason", "not today")
    assert done.returncode == 0, done.stderr
    ended = bank.run(op)
    assert ended.status == OpStatus.FAILED and ended.error_code == "custody_rejected"
    account = bank.ctx.ledger.account(position_account(NAME, client, "USDC"))
    assert account.available == 500 * USDC and account.debits_pending == 0
    assert bank.world.held(address) == 0
    bank.clean()


def test_stablecoins_to_usd_and_back_with_travel_rule_data(bank):
    client, address = bank.client("grace")
    bank.deposit(client, 2_500 * USDC)
    with pytest.raises(Exception, match="whole number of cents"):
        bank.service.convert(client, 1, "USDC", "USD", "c-odd")
    op = bank.service.convert(client, 2_000 * USDC, "USDC", "USD", "c-in")
    assert bank.ctx.ledger.account(dda_account(client)).balance_posted == 0
    done = bank.run(op)
    assert done.status == OpStatus.SUCCEEDED, (done.error_code, done.error_message)
    assert bank.tokens.dda_balance(client) == 2_000_00
    assert bank.position(client) == 500 * USDC
    assert bank.position(DESK) == 2_000 * USDC
    bank.clean()

    # USD back into USDC, delivered to the client's own address: under the US threshold (3,000) no data
    # would travel; under FATF's (1,000) it does.
    compliance = bank.service.clients.compliance
    assert compliance.travel_rule(flow="conversion", amount_usd_minor=1_200_00, supplied=None) is None
    bank.ctx.settings.compliance.jurisdiction = "FATF"
    back = bank.service.convert(client, 1_200_00, "USD", "USDC", "c-out")
    assert back.payload["travel_rule"]["originator"]["originatorPersons"][0]["legalPerson"]
    assert bank.tokens.dda_balance(client) == 2_000_00  # reserved, not yet posted
    bank.step(back)
    transfer_id = bank.until_state(back, CustodyState.AWAITING_APPROVAL)  # 1,200 USDC is above 100
    seen = bank.world.custodian.get(transfer_id)
    assert seen.raw["travel_rule"]["beneficiary"]["accountNumber"] == [address]
    assert bank.world.service.cli("approve", transfer_id).returncode == 0
    ended = bank.run(back)
    assert ended.status == OpStatus.SUCCEEDED, (ended.error_code, ended.error_message)
    assert bank.tokens.dda_balance(client) == 800_00
    assert bank.position(DESK) == 800 * USDC
    assert bank.world.held(address) == 1_200 * USDC
    conversion = bank.ctx.ledger.account(CONVERSION_ACCOUNT)
    assert conversion.balance_posted == -800_00  # the bank paid 2,000 USD and took 1,200 back
    bank.clean()


def test_a_conversion_without_desk_coins_is_refused_and_releases_the_usd(bank):
    client, _ = bank.client("heidi")
    bank.tokens.clients.deposit(client, 100_00, "wire-1")
    with pytest.raises(Exception, match=r"insufficient|exceeds"):
        bank.service.convert(client, 50_00, "USD", "USDC", "c-empty")
    assert bank.tokens.dda_balance(client) == 100_00
    assert bank.ctx.ledger.account(dda_account(client)).debits_pending == 0
