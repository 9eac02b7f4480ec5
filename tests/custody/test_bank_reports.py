"""The bank's side of custody against a custodian played in memory, so that each report can be given
in any order at any moment: a deposit listed before it completes, reports twice and late, a
refusal, a contradiction, a custodian away. On SQLite and PostgreSQL."""

from __future__ import annotations

import itertools
from collections.abc import Iterator, Mapping
from dataclasses import replace
from pathlib import Path

import pytest

from andchain.config import Settings
from andchain.context import Context
from andchain.custody.assets import AssetMap, AssetNotSupported
from andchain.custody.port import (
    DESK,
    Balance,
    CustodianAnswerUnreadable,
    CustodianRefused,
    CustodianUnavailable,
    CustodyAccount,
    CustodyTransfer,
    DepositAddress,
    Destination,
    TransferPage,
    TransferRequest,
    WebhookEvent,
    accepted,
)
from andchain.custody.reconcile import reconcile_custodians
from andchain.custody.service import (
    CustodyHandler,
    CustodyService,
    WebhookUnreadable,
    holdings_account,
    position_account,
)
from andchain.custody.states import CustodyState
from andchain.errors import DomainError, NotFound
from andchain.ops.core import OpStatus
from andchain.ops.holds import LedgerRefused

BTC = 100_000_000
TO = "bcrt1q0xcqpzrky6eff2g52qdye53xkk9jxkvrl4xfg5"


class Played:
    """A custodian whose every answer the test decides."""

    name = "played"

    def __init__(self) -> None:
        self.accounts: dict[str, CustodyAccount] = {}
        self.log: list[CustodyTransfer] = []  # in the order they were created (the listing's order)
        self.by_id: dict[str, CustodyTransfer] = {}
        self.held: dict[tuple[str, str], int] = {}
        self.away = False
        self.refuse: str | None = None
        self.sent = 0
        self._ids = itertools.count(1)

    def _check(self) -> None:
        if self.away:
            raise CustodianUnavailable("the custodian does not answer")

    def create_account(self, name: str, *, owner: str, idempotency_key: str) -> CustodyAccount:
        self._check()
        for account in self.accounts.values():
            if account.owner == owner:
                return account
        account = CustodyAccount(self.name, f"acct-{len(self.accounts) + 1}", name, owner)
        self.accounts[account.id] = account
        return account

    def deposit_address(self, account_id: str, asset: str, network: str) -> DepositAddress:
        self._check()
        return DepositAddress(self.name, account_id, asset, network, f"bcrt1q{account_id}")

    def balances(self, account_id: str) -> list[Balance]:
        self._check()
        return [
            Balance(self.name, account_id, asset, amount, amount)
            for (account, asset), amount in sorted(self.held.items())
            if account == account_id
        ]

    def _put(self, transfer: CustodyTransfer) -> CustodyTransfer:
        if transfer.id not in self.by_id:
            self.log.append(transfer)
        self.by_id[transfer.id] = transfer
        return transfer

    def deposit(self, account_id: str, amount: int, state: CustodyState) -> CustodyTransfer:
        transfer = CustodyTransfer(
            self.name, f"dep-{next(self._ids)}", None, state, state.value, None, None,
            Destination(account_id=account_id), "BTC", "bitcoin", amount, tx_hash="ab" * 32, incoming=True,
        )  # fmt: skip
        if state is CustodyState.COMPLETED:
            self.held[(account_id, "BTC")] = self.held.get((account_id, "BTC"), 0) + amount
        return self._put(transfer)

    def complete(self, transfer_id: str) -> CustodyTransfer:
        transfer = self.by_id[transfer_id]
        done = replace(transfer, state=CustodyState.COMPLETED, raw_status="completed")
        if transfer.incoming:
            key = (transfer.destination.account_id, transfer.asset)
            self.held[key] = self.held.get(key, 0) + transfer.amount_minor
        else:
            key = (transfer.source_account_id, transfer.asset)
            self.held[key] -= transfer.amount_minor
            if transfer.destination.internal:
                other = (transfer.destination.account_id, transfer.asset)
                self.held[other] = self.held.get(other, 0) + transfer.amount_minor
        return self._put(done)

    def end(self, transfer_id: str, state: CustodyState) -> CustodyTransfer:
        return self._put(replace(self.by_id[transfer_id], state=state, raw_status=state.value))

    def _submit(self, request: TransferRequest) -> CustodyTransfer:
        self._check()
        if self.refuse:
            raise CustodianRefused(self.refuse)
        found = self.find(request.idempotency_key)
        if found is not None:
            return found
        self.sent += 1
        return self._put(accepted(self.name, f"tr-{next(self._ids)}", request, CustodyState.CREATED, "created", {}))

    def withdraw(self, request: TransferRequest) -> CustodyTransfer:
        return self._submit(request)

    def transfer(self, request: TransferRequest) -> CustodyTransfer:
        return self._submit(request)

    def get(self, transfer_id: str) -> CustodyTransfer:
        self._check()
        return self.by_id[transfer_id]

    def find(self, idempotency_key: str) -> CustodyTransfer | None:
        self._check()
        return next((t for t in self.by_id.values() if t.idempotency_key == idempotency_key), None)

    def transfers(self, cursor: str | None = None, *, limit: int = 100) -> TransferPage:
        """Each transfer once, as it was when created (as the reference custodian and Fireblocks list)."""
        self._check()
        start = int(cursor or 0)
        page = self.log[start : start + limit]
        return TransferPage(page, str(start + len(page)), more=len(page) == limit)

    def cancel(self, transfer_id: str) -> CustodyTransfer:
        return self.end(transfer_id, CustodyState.CANCELLED)

    def verify_webhook(self, headers: Mapping[str, str], body: bytes) -> WebhookEvent:
        transfer = self.by_id[body.decode()]
        return WebhookEvent(self.name, f"evt-{transfer.id}-{transfer.state}", "transfer", transfer)


@pytest.fixture
def world(engine, tmp_path: Path) -> Iterator[tuple[CustodyService, Played]]:
    url = engine.url.render_as_string(hide_password=False)
    settings = Settings(data_dir=tmp_path, database_url=url, keystore={"passphrase": "test", "scrypt_n": 1024})
    ctx = Context(settings)
    ctx.__dict__["engine"] = engine
    played = Played()
    yield CustodyService(ctx, custodians={"played": played}), played
    ctx.close()


def position(service: CustodyService, owner: str) -> int:
    return service.ledger.account(position_account("played", owner, "BTC")).balance_posted


def funded(service: CustodyService, played: Played, name: str, amount: int) -> tuple[str, str]:
    """A client with an account at the custodian holding `amount` BTC, credited; (client, account)."""
    client = service.clients.onboard(name).id
    account = service.open_account("played", client).account_id
    service.ensure_positions("played", client, "BTC")
    played.deposit(account, amount, CustodyState.COMPLETED)
    service.poll("played")
    return client, account


def clean(service: CustodyService) -> bool:
    _, findings = reconcile_custodians(service)
    return all(f.ok for f in findings)


def test_a_deposit_listed_before_it_completed_is_credited_by_polling_once(world):
    service, played = world
    client = service.clients.onboard("Ada").id
    account = service.open_account("played", client).account_id
    service.ensure_positions("played", client, "BTC")
    pending = played.deposit(account, BTC, CustodyState.CONFIRMING)
    service.poll("played")
    assert position(service, client) == 0
    assert clean(service)  # nothing completed yet, nothing held
    played.complete(pending.id)
    assert clean(service)  # completed at the custodian, arriving for the bank: not a break
    service.poll("played")  # listed already: looked up again, credited
    assert position(service, client) == BTC
    for _ in range(2):  # a late webhook, a poll from the start: nothing twice
        service.webhook("played", {}, pending.id.encode())
        service._save_cursor("played", None)
        service.poll("played")
    assert position(service, client) == BTC
    assert -service.ledger.account(holdings_account("played", "BTC")).balance_posted == BTC
    assert clean(service)


def test_a_deposit_to_an_account_the_bank_did_not_open_books_nothing(world):
    service, played = world
    stranger = played.create_account("not ours", owner="someone", idempotency_key="x")
    played.deposit(stranger.id, BTC, CustodyState.COMPLETED)
    service.poll("played")
    assert service.accounts("played") == []


def test_a_withdrawal_refused_rejected_or_completed_ends_once_with_its_hold(world):
    service, played = world
    client, _account = funded(service, played, "Bea", 2 * BTC)
    handler = CustodyHandler(service)

    played.refuse = "address on a sanctions list"
    refused = service.withdraw("played", client, "BTC", "bitcoin", BTC // 2, TO, "w-refused")
    handler.advance([refused])
    refused = service.ops.get(refused.id)
    assert (refused.status, refused.error_code) == (OpStatus.FAILED, "custodian_refused")
    played.refuse = None

    rejected = service.withdraw("played", client, "BTC", "bitcoin", BTC // 2, TO, "w-rejected")
    handler.advance([rejected])
    transfer_id = service.ops.get(rejected.id).state["custody"]["transfer_id"]
    played.end(transfer_id, CustodyState.REJECTED)
    service.webhook("played", {}, transfer_id.encode())
    assert service.ops.get(rejected.id).error_code == "custody_rejected"

    done = service.withdraw("played", client, "BTC", "bitcoin", BTC // 2, TO, "w-done")
    played.away = True
    handler.advance([done])  # waits, alone, with backoff: one attempt counted
    waiting = service.ops.get(done.id)
    assert (waiting.status, waiting.attempts, waiting.error_code) == (OpStatus.RECEIVED, 1, "custodian_unavailable")
    played.away = False
    handler.advance([service.ops.get(done.id)])  # looked up by its key first: none, so sent once
    assert service.ops.get(done.id).attempts == 0  # the custodian answered: the count starts again
    transfer_id = service.ops.get(done.id).state["custody"]["transfer_id"]
    played.end(transfer_id, CustodyState.BROADCASTING)
    handler.advance([service.ops.get(done.id)])
    assert service.ops.get(done.id).status == OpStatus.CONFIRMING
    played.complete(transfer_id)
    assert clean(service)  # completed there, not yet here: in flight
    handler.advance([service.ops.get(done.id)])
    assert service.ops.get(done.id).status == OpStatus.SUCCEEDED
    # A late report of an earlier state, then a contradicting one: the operation stays as it ended.
    service.report("played", replace(played.by_id[transfer_id], state=CustodyState.SIGNING))
    service.report("played", replace(played.by_id[transfer_id], state=CustodyState.FAILED))
    assert service.ops.get(done.id).status == OpStatus.SUCCEEDED
    assert played.sent == 2  # the rejected one and this one; the refused one made none
    assert position(service, client) == 2 * BTC - BTC // 2
    account_row = service.ledger.account(position_account("played", client, "BTC"))
    assert account_row.debits_pending == 0
    assert clean(service)


def test_a_contradiction_in_flight_stops_for_an_operator_with_the_hold_kept(world):
    service, played = world
    client, _account = funded(service, played, "Cy", BTC)
    op = service.withdraw("played", client, "BTC", "bitcoin", BTC // 4, TO, "w-odd")
    CustodyHandler(service).advance([op])
    recorded = service.ops.get(op.id)
    other = replace(played.by_id[recorded.state["custody"]["transfer_id"]], id="tr-someone-else")
    service.report("played", replace(other, idempotency_key=f"andchain-{op.id}"))
    stopped = service.ops.get(op.id)
    assert (stopped.status, stopped.error_code) == (OpStatus.NEEDS_ATTENTION, "custody_contradiction")
    assert service.ledger.account(position_account("played", client, "BTC")).debits_pending == BTC // 4


def test_an_internal_transfer_and_a_custodian_that_holds_more_than_the_books(world):
    service, played = world
    client, account = funded(service, played, "Dee", BTC)
    op = service.transfer("played", client, DESK, "BTC", "bitcoin", BTC // 2, "t-1")
    assert op.payload["client"] == client
    CustodyHandler(service).advance([op])
    transfer_id = service.ops.get(op.id).state["custody"]["transfer_id"]
    played.complete(transfer_id)
    assert clean(service)
    CustodyHandler(service).advance([service.ops.get(op.id)])
    assert service.ops.get(op.id).status == OpStatus.SUCCEEDED
    assert position(service, client) == position(service, DESK) == BTC // 2
    assert clean(service)
    played.held[(account, "BTC")] += 1  # the custodian shows a satoshi the books do not hold
    section, findings = reconcile_custodians(service)
    assert not section["played"]["ok"]
    assert [f.subject for f in findings if not f.ok] == [f"played client {client} BTC (account {account})"]
    played.away = True
    section, findings = reconcile_custodians(service)
    assert section["played"]["error"] and not all(f.ok for f in findings)


def test_a_refused_look_up_after_an_uncertain_send_keeps_the_hold_for_an_operator(world):
    service, played = world
    client, _account = funded(service, played, "Eve", BTC)
    op = service.withdraw("played", client, "BTC", "bitcoin", BTC // 2, TO, "w-uncertain")
    recorded = service.ops.update(op, state={**op.state, "custody": {"submitting": True}, "done": ["submit"]})
    played.refuse = "401 the API key was rotated"
    original_find = played.find

    def refused_find(key: str) -> None:
        raise CustodianRefused("401 unauthorized")

    played.find = refused_find  # type: ignore[method-assign]
    CustodyHandler(service).advance([recorded])
    stopped = service.ops.get(op.id)
    assert (stopped.status, stopped.error_code) == (OpStatus.NEEDS_ATTENTION, "custody_lookup_refused")
    assert service.ledger.account(position_account("played", client, "BTC")).debits_pending == BTC // 2
    played.find = original_find  # type: ignore[method-assign]
    assert played.sent == 0


def test_requests_the_custodian_could_never_carry_out_are_refused_before_anything_is_recorded(world):
    service, played = world
    client, _account = funded(service, played, "Fay", BTC)
    with pytest.raises(DomainError, match="one of the bank's networks or to Bitcoin"):
        service.withdraw("played", client, "BTC", "litecoin", 1, TO, "w-elsewhere")
    played.assets = AssetMap.parse("played", {"BTC@bitcoin": "BTC_TEST"})  # type: ignore[attr-defined]
    service.open_account("played", DESK)
    with pytest.raises(AssetNotSupported):
        service.withdraw("played", DESK, "USDC", "base", 1, "0x" + "12" * 20, "w-unmapped")
    with pytest.raises(AssetNotSupported):
        service.transfer("played", client, DESK, "BTC", "lightning", 1, "t-unmapped")
    assert service.ops.find_by_key("w-elsewhere") is None and service.ops.find_by_key("w-unmapped") is None
    assert service.ledger.account(position_account("played", client, "BTC")).debits_pending == 0


def test_a_webhook_that_cannot_be_read_or_names_no_custodian_changes_nothing(world):
    service, _ = world
    with pytest.raises(WebhookUnreadable):
        service.webhook("played", {}, b"no-such-transfer")
    with pytest.raises(NotFound, match="no such webhook endpoint"):
        service.webhook("elsewhere", {}, b"{}")


def test_a_transfer_that_cannot_be_booked_is_set_aside_and_the_others_are_credited(world):
    service, played = world
    client = service.clients.onboard("Gus").id
    account = service.open_account("played", client).account_id
    service.ensure_positions("played", client, "BTC")
    played.deposit(account, 0, CustodyState.COMPLETED)  # a custodian's row without an amount
    poisoned = played.deposit(account, 7, CustodyState.COMPLETED)
    original_report = service.report

    def report(custodian: str, transfer: CustodyTransfer) -> str:
        if transfer.id == poisoned.id:
            raise LedgerRefused("a transfer the ledger refuses every time", code="amount_must_be_positive")
        return original_report(custodian, transfer)

    service.report = report  # type: ignore[method-assign]
    stuck = played.deposit(account, BTC, CustodyState.CONFIRMING)
    later = played.deposit(account, 2 * BTC, CustodyState.CONFIRMING)
    service.poll("played")
    played.complete(stuck.id)
    played.complete(later.id)
    original_get = played.get

    def get(transfer_id: str) -> CustodyTransfer:
        if transfer_id == stuck.id:
            raise CustodianAnswerUnreadable("an asset no longer in the map")
        return original_get(transfer_id)

    played.get = get  # type: ignore[method-assign]
    for _ in range(2):
        service.poll("played")
    assert position(service, client) == 2 * BTC  # the one that cannot be read holds none back
    played.get = original_get  # type: ignore[method-assign]
    service.poll("played")
    assert position(service, client) == 3 * BTC  # the poisoned one set aside, never credited
    # The receiving side of a transfer between two of the bank's own accounts is never a deposit.
    desk = service.open_account("played", DESK).account_id
    inside = replace(played.deposit(desk, BTC, CustodyState.COMPLETED), source_account_id=account)
    played.by_id[inside.id] = inside
    played.log[-1] = inside
    service.poll("played")
    service.ensure_positions("played", DESK, "BTC")
    assert service.ledger.account(position_account("played", DESK, "BTC")).balance_posted == 0


def test_a_transfer_completed_for_an_operation_that_failed_is_a_break(world):
    service, played = world
    client, _account = funded(service, played, "Hal", BTC)
    op = service.withdraw("played", client, "BTC", "bitcoin", BTC // 2, TO, "w-contradicted")
    CustodyHandler(service).advance([op])
    transfer_id = service.ops.get(op.id).state["custody"]["transfer_id"]
    service.report("played", played.end(transfer_id, CustodyState.FAILED))
    assert service.ops.get(op.id).status == OpStatus.FAILED
    assert clean(service)
    service.report("played", played.complete(transfer_id))  # the custodian changed its mind
    _, findings = reconcile_custodians(service)
    broken = [f.subject for f in findings if not f.ok]
    assert f"played transfer {transfer_id} of operation {op.id}" in broken


def test_a_replay_after_the_client_was_suspended_finds_its_operation(world):
    service, played = world
    client, _account = funded(service, played, "Ida", BTC)
    op = service.withdraw("played", client, "BTC", "bitcoin", BTC // 2, TO, "w-before")
    service.clients.set_status(client, "suspended")
    assert service.withdraw("played", client, "BTC", "bitcoin", BTC // 2, TO, "w-before").id == op.id
    with pytest.raises(DomainError, match="suspended"):
        service.withdraw("played", client, "BTC", "bitcoin", BTC // 4, TO, "w-after")
