"""Account-to-wallet funding: a partner (an exchange) pulls from a customer's consented account, as an
ACH debit the bank receives, through its lifecycle.

    pending   the debit arrived: the amount is held on the customer's DDA (-> ACH clearing), a two-phase
              ledger transfer; a DDA that cannot cover it is returned at once, R01 (nothing held)
    posted    its settlement date came (`connect.pull_post_after_s`): the hold is posted
    settled   its return window closed (`connect.pull_return_window_s`): clearing -> the bank's cash,
              the money has left
    returned  before settlement the bank returns it (R01 insufficient funds, R02 account closed,
              R10 the customer says it did not authorize it, ...): a pending one is released, a posted
              one reversed to the DDA

Per customer: at most `connect.pull_daily_max` a day and `connect.pull_hourly_count_max` pulls an
hour (returned pulls do not count). A partner's pull is identified by its Idempotency-Key: the same
key and request answer the same pull; another request under the key is a conflict.
"""

from __future__ import annotations

import hashlib
import json
import logging
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, func, select, update
from sqlalchemy.exc import IntegrityError

from andchain.connect import schema
from andchain.connect.oauth import Access, consented_account
from andchain.context import Context
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError, NotFound
from andchain.events.store import iso
from andchain.ledger import AccountFlags, AccountKind, AccountSpec, TransferSpec
from andchain.money import format_minor, parse_minor
from andchain.ops import holds
from andchain.tokens.model import BANK_CASH, BANK_SUSPENSE

log = logging.getLogger(__name__)

CLEARING = "bank:usd:ach_clearing"
HOLD_CODE = "connect_pull"
PENDING, POSTED, SETTLED, RETURNED = "pending", "posted", "settled", "returned"
RETURN_CODES = {
    "R01": "insufficient funds",
    "R02": "account closed",
    "R03": "no account, or unable to locate it",
    "R08": "payment stopped",
    "R10": "the customer advises it was not authorized",
    "R16": "account frozen",
    "R29": "the customer advises the company was not authorized",
}
DUE_BATCH = 200
HOUR_US = 3600 * 1_000_000
DAY_US = 86_400 * 1_000_000


@dataclass(frozen=True)
class Pull:
    id: str
    client_id: str
    consent_id: str
    customer: str
    account_id: int
    amount_minor: int
    memo: str
    status: str
    return_code: str | None
    created_at_us: int
    post_at_us: int
    settle_at_us: int

    def view(self) -> dict[str, Any]:
        return {
            "pullId": self.id,
            "accountId": str(self.account_id),
            "amount": format_minor(self.amount_minor, 2),
            "currency": "USD",
            "memo": self.memo,
            "status": self.status,
            "returnCode": self.return_code,
            "returnReason": RETURN_CODES.get(self.return_code or ""),
            "createdAt": iso(self.created_at_us),
            "settlementDate": iso(self.post_at_us),
            "returnWindowEnds": iso(self.settle_at_us),
        }


def _pull_of(row: Any) -> Pull:
    return Pull(row.id, row.client_id, row.consent_id, row.customer, int(row.account_id), int(row.amount_minor),
                row.memo, row.status, row.return_code, int(row.created_at_us), int(row.post_at_us),
                int(row.settle_at_us))  # fmt: skip


def pull_hold(pull_id: str) -> holds.Hold:
    return holds.Hold(f"{HOLD_CODE}:{pull_id}", HOLD_CODE)


class Pulls:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ledger = ctx.ledger
        self.settings = ctx.settings.connect
        self._ready = False

    def _ensure_accounts(self) -> None:
        if self._ready:
            return
        specs = [
            AccountSpec(CLEARING, "USD", kind=AccountKind.LIABILITY),
            AccountSpec(BANK_CASH, "USD", kind=AccountKind.ASSET),
        ]
        for result in self.ledger.create_accounts(specs):
            if not (result.ok or result.result.value == "exists"):
                raise DomainError(f"the ACH clearing account was refused: {result.result.value}")
        self._ready = True

    def account_of(self, access: Access, account_id: str) -> Any:
        """A consented deposit account of the customer (USD, never let below zero by the ledger)."""
        return consented_account(
            self.ledger, access, account_id,
            lambda a: a.asset == "USD" and bool(a.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS)
            and ":card:" not in a.name,
        )  # fmt: skip

    # ---------------------------------------------------------------- create

    def create(self, access: Access, account_id: str, amount: str, memo: str, key: str) -> Pull:
        if not isinstance(key, str) or not 0 < len(key) <= 200 or "\x00" in key:
            raise DomainError("a pull carries an Idempotency-Key of 1-200 characters", code="invalid_request")
        if not isinstance(memo, str) or len(memo) > 140 or "\x00" in memo:
            raise DomainError("a memo has at most 140 characters", code="invalid_request")
        try:
            if not isinstance(amount, str) or Decimal(amount) <= 0:
                raise DomainError(f"an amount is a positive decimal string, was {amount!r}", code="invalid_amount")
            amount_minor = parse_minor(amount, 2)
        except (InvalidOperation, ValueError):
            raise DomainError(
                f"an amount is a positive decimal string, was {amount!r}", code="invalid_amount"
            ) from None
        request = {"account": str(account_id), "amount": amount_minor, "memo": memo, "consent": access.consent_id}
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        existing = self._by_key(access.client_id, key)
        if existing is not None:
            return self._replayed(existing, digest)
        account = self.account_of(access, account_id)
        self.ctx.compliance.screen_party(access.customer, flow="pull")
        self._ensure_accounts()
        now = self.ctx.clock()
        pull_id = "pull_" + self.ledger.ids.new_id().lower()
        try:
            with write_transaction(self.ctx.engine) as conn:
                # The customer's row, locked (PostgreSQL; SQLite writes one at a time): its limits are
                # summed, and its status and the consent read, with no other pull of it in between.
                self._lock_customer(conn, access)
                self._check_limits(conn, access.customer, amount_minor, now)
                self.ctx.compliance.admit(conn, access.customer, "pull", amount_minor, f"pull:{pull_id}")
                values = dict(
                    id=pull_id, client_id=access.client_id, idempotency_key=key, request_sha256=digest,
                    consent_id=access.consent_id, customer=access.customer, account_id=account.id,
                    amount_minor=amount_minor, memo=memo, status=PENDING, return_code=None, created_at_us=now,
                    post_at_us=now + int(self.settings.pull_post_after_s * 1_000_000),
                    settle_at_us=now + int((self.settings.pull_post_after_s + self.settings.pull_return_window_s)
                                           * 1_000_000),
                    updated_at_us=now,
                )  # fmt: skip
                conn.execute(schema.pulls.insert().values(**values))
                code = "R02" if account.closed else None
                if code is None:
                    try:
                        with conn.begin_nested():
                            holds.reserve(
                                self.ledger, pull_hold(pull_id), account.id,
                                self.ledger.account(CLEARING, conn=conn).id, amount_minor, "USD",
                                memo=f"ACH debit {pull_id} {memo}"[:200], conn=conn,
                            )  # fmt: skip
                    except holds.LedgerRefused as exc:
                        if exc.code == "debit_account_closed":
                            code = "R02"
                        elif exc.code in ("insufficient_funds", "exceeds_credits"):
                            code = "R01"
                        else:
                            raise
                if code is not None:
                    # The account cannot take it: the bank returns the entry at once (nothing held).
                    conn.execute(
                        update(schema.pulls).where(schema.pulls.c.id == pull_id).values(status=RETURNED,
                                                                                        return_code=code)
                    )  # fmt: skip
        except IntegrityError:
            found = self._by_key(access.client_id, key)
            if found is None:
                raise
            return self._replayed(found, digest)
        return self.get(pull_id)

    def _lock_customer(self, conn: Connection, access: Access) -> None:
        from andchain.tokens import schema as clients_schema

        c = clients_schema.clients
        query = select(c.c.status).where(func.lower(c.c.id) == access.customer)
        if conn.dialect.name == "postgresql":
            query = query.with_for_update()
        status = conn.execute(query).scalar()
        if status != "active":
            raise DomainError("the customer's account cannot be pulled from now", code="customer_not_active")
        k = schema.consents
        consent = conn.execute(select(k.c.status, k.c.expires_at_us).where(k.c.id == access.consent_id)).first()
        if consent is None or consent.status != "active" or consent.expires_at_us <= self.ctx.clock():
            raise DomainError("the consent behind this token has ended", code="consent_not_active")

    def _check_limits(self, conn: Connection, customer: str, amount_minor: int, now: int) -> None:
        t = schema.pulls
        day_start = now - now % DAY_US
        # Returned pulls give their amount back to the day; every attempt counts in the hour (R01 ones
        # too: a partner cannot probe a balance for free).
        live = t.c.status != RETURNED
        today = conn.execute(
            select(func.coalesce(func.sum(t.c.amount_minor), 0)).where(
                t.c.customer == customer, live, t.c.created_at_us >= day_start
            )
        ).scalar()
        daily_max = parse_minor(self.settings.pull_daily_max, 2)
        if int(today or 0) + amount_minor > daily_max:
            # Nothing of what other pulls took is told (another partner's, another account's).
            raise DomainError("this pull is above what the customer may be pulled today", code="pull_limit_exceeded")
        recent = conn.execute(
            select(func.count()).select_from(t).where(t.c.customer == customer, t.c.created_at_us > now - HOUR_US)
        ).scalar()
        if int(recent or 0) >= self.settings.pull_hourly_count_max:
            raise DomainError("too many pulls from this customer in the last hour", code="pull_velocity_exceeded")

    def _by_key(self, client_id: str, key: str) -> Pull | None:
        t = schema.pulls
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.client_id == client_id, t.c.idempotency_key == key)).first()
        return None if row is None else _pull_of(row)

    def _replayed(self, pull: Pull, digest: str) -> Pull:
        t = schema.pulls
        with self.ctx.engine.connect() as conn:
            known = conn.execute(select(t.c.request_sha256).where(t.c.id == pull.id)).scalar()
        if known != digest:
            raise Conflict("this Idempotency-Key was used for another pull", code="idempotency_key_reused")
        return pull

    # ----------------------------------------------------------------- reads

    def get(self, pull_id: str, *, client_id: str | None = None, customer: str | None = None) -> Pull:
        t = schema.pulls
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == pull_id)).first()
        if row is None or (client_id and row.client_id != client_id) or (customer and row.customer != customer):
            raise NotFound(f"no pull {pull_id!r}", code="pull_not_found")
        return _pull_of(row)

    def list(self, *, customer: str | None = None, limit: int = 100) -> list[Pull]:
        t = schema.pulls
        query = select(t).order_by(t.c.created_at_us.desc(), t.c.id.desc()).limit(limit)
        if customer is not None:
            query = query.where(t.c.customer == customer)
        with self.ctx.engine.connect() as conn:
            return [_pull_of(r) for r in conn.execute(query)]

    # ------------------------------------------------------------- lifecycle

    def advance(self) -> int:
        """Post the pulls whose settlement date came, settle those whose return window closed."""
        t = schema.pulls
        now = self.ctx.clock()
        moved = 0
        with self.ctx.engine.connect() as conn:
            due_post = [r.id for r in conn.execute(
                select(t.c.id).where(t.c.status == PENDING, t.c.post_at_us <= now)
                .order_by(t.c.post_at_us, t.c.id).limit(DUE_BATCH))]  # fmt: skip
            due_settle = [r.id for r in conn.execute(
                select(t.c.id).where(t.c.status == POSTED, t.c.settle_at_us <= now)
                .order_by(t.c.settle_at_us, t.c.id).limit(DUE_BATCH))]  # fmt: skip
        for pull_id in due_post:
            try:
                with write_transaction(self.ctx.engine) as conn:
                    if self._move(conn, pull_id, PENDING, POSTED):
                        holds.post(self.ledger, pull_hold(pull_id), conn=conn)
                        moved += 1
            except DomainError as exc:  # one pull that cannot move never holds up the others
                if exc.transient:
                    raise
                log.error("pull %s could not be posted: %s", pull_id, exc)
        for pull_id in due_settle:
            try:
                moved += self._settle(pull_id)
            except DomainError as exc:
                if exc.transient:
                    raise
                log.error("pull %s could not be settled: %s", pull_id, exc)
        return moved

    def _settle(self, pull_id: str) -> int:
        """Its return window closed: clearing -> the bank's cash, with the status, in one transaction."""
        t = schema.pulls
        with write_transaction(self.ctx.engine) as conn:
            if not self._move(conn, pull_id, POSTED, SETTLED):
                return 0
            pull = _pull_of(conn.execute(select(t).where(t.c.id == pull_id)).one())
            holds.book(
                self.ledger,
                [TransferSpec(self.ledger.account(CLEARING, conn=conn).id,
                              self.ledger.account(BANK_CASH, conn=conn).id, pull.amount_minor,
                              id=f"{HOLD_CODE}:{pull_id}:settle", asset="USD", code=HOLD_CODE,
                              memo=f"ACH debit {pull_id} settled")],
                conn=conn, what=f"pull {pull_id} settlement",
            )  # fmt: skip
        return 1

    def _move(self, conn: Connection, pull_id: str, current: str, new: str, **values: Any) -> bool:
        t = schema.pulls
        done = conn.execute(
            update(t)
            .where(t.c.id == pull_id, t.c.status == current)
            .values(status=new, updated_at_us=self.ctx.clock(), **values)
        )
        return done.rowcount == 1

    def return_(self, pull_id: str, code: str) -> Pull:
        """The bank returns the debit before its return window closes: released, or reversed to the DDA."""
        if code not in RETURN_CODES:
            raise DomainError(
                f"a return code is one of {', '.join(sorted(RETURN_CODES))}, was {code!r}", code="invalid_return_code"
            )
        pull = self.get(pull_id)
        if pull.status == RETURNED and pull.return_code == code:
            return pull  # returned already, with this code: a retry
        if pull.status == SETTLED or (pull.status == POSTED and self.ctx.clock() >= pull.settle_at_us):
            raise Conflict(f"pull {pull.id}: its return window closed", code="return_window_closed")
        with write_transaction(self.ctx.engine) as conn:
            if self._move(conn, pull.id, PENDING, RETURNED, return_code=code):
                holds.void(self.ledger, pull_hold(pull.id), conn=conn)
            elif self._move(conn, pull.id, POSTED, RETURNED, return_code=code):
                # Back to the customer's account; to the suspense account if it was closed since (an
                # operator pays it out), never left posted to settle.
                target = self.ledger.account(pull.account_id, conn=conn)
                credit = target.id if not target.closed else self.ledger.account(BANK_SUSPENSE, conn=conn).id
                holds.book(
                    self.ledger,
                    [TransferSpec(self.ledger.account(CLEARING, conn=conn).id, credit, pull.amount_minor,
                                  id=f"{HOLD_CODE}:{pull.id}:return", asset="USD", code=f"{HOLD_CODE}_return",
                                  memo=f"ACH return {code} of {pull.id}")],
                    conn=conn, what=f"pull {pull.id} return",
                )  # fmt: skip
            else:
                current = self.get(pull.id)
                if current.status == SETTLED:
                    raise Conflict(f"pull {pull.id}: its return window closed", code="return_window_closed")
                raise Conflict(f"pull {pull.id} was returned already ({current.return_code})", code="pull_returned")
        return self.get(pull.id)


class PullsPart:
    """The worker's part: moves pulls along their lifecycle as their dates come, and expires the holds
    whose time ran out (card authorizations not captured)."""

    name = "connect-pulls"

    def __init__(self, pulls: Pulls) -> None:
        import time

        self.pulls = pulls
        self._monotonic = time.monotonic
        self._next = 0.0
        self.moved = 0
        self.expired = 0

    def run(self) -> None:
        if self._monotonic() < self._next:
            return
        self.moved = self.pulls.advance()
        # Holds with a timeout (card authorizations not captured in time) expire, their credit released.
        self.expired = self.pulls.ledger.expire_pending()
        self._next = self._monotonic() + (0.0 if self.moved >= DUE_BATCH else 1.0)

    def idle(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"moved": self.moved, "expired": self.expired}
