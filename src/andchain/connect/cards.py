"""Card funding: a customer's retail credit card, charged by a partner (an exchange) through its
consent, as a card network would: authorization, then capture, void, or expiry.

A card's credit line is a ledger account, `clients:<customer>:card:<card id>`, credited with the
limit when the card is issued (from `bank:usd:card_lines`) and never debited beyond it
(debits_must_not_exceed_credits): its balance is the available credit, the limit less it what the
customer owes.

    authorized  a two-phase hold on the available credit (-> `bank:usd:card_settlement`, what the bank
                owes the partner), with its fee when a cash advance; the ledger expires it after
                `connect.card_auth_ttl_s` (7 days) if it is not captured, releasing the credit
    captured    the holds posted; a purchase earns points (PTS, `connect.points_per_usd`), a cash
                advance earns none
    voided      the holds released

A purchase with a merchant category code in `connect.cash_advance_mccs` (6051: crypto, quasi-cash)
is a cash advance: `connect.cash_advance_fee_percent` of it, at least `connect.cash_advance_fee_min`,
held with it and posted to `bank:usd:card_fees` at capture.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import select, update
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

LINES = "bank:usd:card_lines"
SETTLEMENT = "bank:usd:card_settlement"
FEES = "bank:usd:card_fees"
POINTS_ISSUANCE = "bank:pts:issuance"
AUTHORIZED, CAPTURED, VOIDED, EXPIRED = "authorized", "captured", "voided", "expired"
HOLD_CODE = "card_auth"


def line_account(customer: str, card_id: str) -> str:
    return f"clients:{customer}:card:{card_id}"


def points_account(customer: str) -> str:
    return f"clients:{customer}:points"


def auth_hold(auth_id: str) -> holds.Hold:
    return holds.Hold(f"{HOLD_CODE}:{auth_id}", HOLD_CODE)


def fee_hold(auth_id: str) -> holds.Hold:
    return holds.Hold(f"{HOLD_CODE}:{auth_id}:fee", HOLD_CODE)


@dataclass(frozen=True)
class Card:
    id: str
    customer: str
    limit_minor: int
    status: str
    created_at_us: int


@dataclass(frozen=True)
class Authorization:
    id: str
    card_id: str
    client_id: str
    customer: str
    amount_minor: int
    fee_minor: int
    mcc: str
    merchant: str
    cash_advance: bool
    status: str
    created_at_us: int
    expires_at_us: int

    def view(self) -> dict[str, Any]:
        return {
            "authorizationId": self.id,
            "cardId": self.card_id,
            "amount": format_minor(self.amount_minor, 2),
            "fee": format_minor(self.fee_minor, 2),
            "currency": "USD",
            "mcc": self.mcc,
            "merchant": self.merchant,
            "cashAdvance": self.cash_advance,
            "status": self.status,
            "createdAt": iso(self.created_at_us),
            "expiresAt": iso(self.expires_at_us),
        }


def _auth_of(row: Any, status: str | None = None) -> Authorization:
    return Authorization(row.id, row.card_id, row.client_id, row.customer, int(row.amount_minor),
                         int(row.fee_minor), row.mcc, row.merchant, bool(row.cash_advance), status or row.status,
                         int(row.created_at_us), int(row.expires_at_us))  # fmt: skip


class Cards:
    def __init__(self, ctx: Context) -> None:
        self.ctx = ctx
        self.ledger = ctx.ledger
        self.settings = ctx.settings.connect
        self._ready = False

    def _ensure(self) -> None:
        if self._ready:
            return
        self.ctx.register_assets([self.ctx.settings.asset_registry.get("PTS")])
        specs = [
            AccountSpec(LINES, "USD", kind=AccountKind.ASSET),
            AccountSpec(SETTLEMENT, "USD", kind=AccountKind.LIABILITY),
            AccountSpec(FEES, "USD", kind=AccountKind.INCOME),
            AccountSpec(POINTS_ISSUANCE, "PTS", kind=AccountKind.EQUITY),
        ]
        for result in self.ledger.create_accounts(specs):
            if not (result.ok or result.result.value == "exists"):
                raise DomainError(f"a card account was refused: {result.result.value}")
        self._ready = True

    # ---------------------------------------------------------------- cards

    def issue(self, customer_ref: str, limit: str) -> Card:
        """A credit card for a customer, its line funded with the limit."""
        from andchain.tokens.clients import Clients  # (the clients' register)

        clients: Clients = Clients(self.ctx.engine, self.ledger, self.ctx.keys, self.ctx.settings, self.ctx.clock,
                                   self.ledger.ids)  # fmt: skip
        client = clients.active(customer_ref)
        limit_minor = parse_minor(limit, 2)
        if limit_minor <= 0:
            raise DomainError("a credit limit is positive", code="invalid_amount")
        self._ensure()
        card_id = "card_" + self.ledger.ids.new_id().lower()
        now = self.ctx.clock()
        customer = client.id.lower()
        with write_transaction(self.ctx.engine) as conn:
            conn.execute(schema.cards.insert().values(id=card_id, customer=customer, limit_minor=limit_minor,
                                                      status="active", created_at_us=now))  # fmt: skip
            made = self.ledger.create_accounts(
                [
                    AccountSpec(line_account(customer, card_id), "USD", kind=AccountKind.LIABILITY,
                                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
                    AccountSpec(points_account(customer), "PTS", kind=AccountKind.LIABILITY,
                                flags=AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
                ],
                conn=conn,
            )  # fmt: skip
            for result in made:
                if not (result.ok or result.result.value == "exists"):
                    raise DomainError(f"the card's accounts were refused: {result.result.value}")
            holds.book(
                self.ledger,
                [TransferSpec(self.ledger.account(LINES, conn=conn).id,
                              self.ledger.account(line_account(customer, card_id), conn=conn).id, limit_minor,
                              id=f"card:{card_id}:line", asset="USD", code="card_line", memo="credit limit")],
                conn=conn, what=f"card {card_id} line",
            )  # fmt: skip
        return self.card(card_id)

    def card(self, card_id: str) -> Card:
        t = schema.cards
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == card_id)).first()
        if row is None:
            raise NotFound(f"no card {card_id!r}", code="card_not_found")
        return Card(row.id, row.customer, int(row.limit_minor), row.status, int(row.created_at_us))

    def cards(self, customer: str | None = None) -> list[Card]:
        t = schema.cards
        query = select(t.c.id).order_by(t.c.created_at_us)
        if customer is not None:
            query = query.where(t.c.customer == customer)
        with self.ctx.engine.connect() as conn:
            ids = [r[0] for r in conn.execute(query)]
        return [self.card(i) for i in ids]

    def card_of_account(self, access: Access, account_id: str) -> Card:
        """The consented card whose line is this account, or 403 naming nothing."""
        prefix = f"clients:{access.customer}:card:"
        account = consented_account(self.ledger, access, account_id, lambda a: a.name.startswith(prefix))
        card = self.card(account.name[len(prefix) :])
        if card.status != "active":
            raise DomainError("the card is closed", code="card_closed")
        return card

    def owed(self, card: Card) -> int:
        line = self.ledger.account(line_account(card.customer, card.id))
        return card.limit_minor - line.balance_posted

    # -------------------------------------------------------- authorizations

    def fee_of(self, amount_minor: int, mcc: str) -> int:
        if mcc not in self.settings.cash_advance_mccs:
            return 0
        percent = (Decimal(amount_minor) * Decimal(self.settings.cash_advance_fee_percent) / 100).to_integral_value(
            ROUND_CEILING
        )
        return max(int(percent), parse_minor(self.settings.cash_advance_fee_min, 2))

    def authorize(
        self, access: Access, account_id: str, amount: str, mcc: str, merchant: str, key: str
    ) -> Authorization:
        if not isinstance(key, str) or not 0 < len(key) <= 200:
            raise DomainError("a charge carries an Idempotency-Key of 1-200 characters", code="invalid_request")
        if not (isinstance(mcc, str) and len(mcc) == 4 and mcc.isdigit() and mcc.isascii()):
            raise DomainError("a merchant category code is 4 digits", code="invalid_request")
        if not isinstance(merchant, str) or not 0 < len(merchant) <= 100 or "\x00" in merchant:
            raise DomainError("a merchant has a name of 1-100 characters", code="invalid_request")
        try:
            amount_minor = parse_minor(amount, 2)
        except (InvalidOperation, ValueError):
            raise DomainError(
                f"an amount is a positive decimal string, was {amount!r}", code="invalid_amount"
            ) from None
        if amount_minor <= 0:
            raise DomainError("an amount is positive", code="invalid_amount")
        request = {"account": str(account_id), "amount": amount_minor, "mcc": mcc, "merchant": merchant,
                   "consent": access.consent_id}  # fmt: skip
        digest = hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()
        existing = self._by_key(access.client_id, key)
        if existing is not None:
            return self._replayed(existing, digest)
        card = self.card_of_account(access, account_id)
        self._ensure()
        fee = self.fee_of(amount_minor, mcc)
        now = self.ctx.clock()
        auth_id = "auth_" + self.ledger.ids.new_id().lower()
        ttl = self.settings.card_auth_ttl_s
        self.ctx.compliance.screen_party(card.customer, flow="card")
        try:
            with write_transaction(self.ctx.engine) as conn:
                self.ctx.compliance.admit(conn, card.customer, "card", amount_minor + fee, f"card:{auth_id}")
                conn.execute(
                    schema.card_auths.insert().values(
                        id=auth_id, card_id=card.id, client_id=access.client_id, idempotency_key=key,
                        request_sha256=digest, customer=card.customer, amount_minor=amount_minor, fee_minor=fee,
                        mcc=mcc, merchant=merchant, cash_advance=fee > 0 or mcc in self.settings.cash_advance_mccs,
                        status=AUTHORIZED, created_at_us=now, expires_at_us=now + ttl * 1_000_000,
                        updated_at_us=now,
                    )
                )  # fmt: skip
                line = self.ledger.account(line_account(card.customer, card.id), conn=conn).id
                specs = [TransferSpec(line, self.ledger.account(SETTLEMENT, conn=conn).id, amount_minor,
                                      id=auth_hold(auth_id).id, asset="USD", flags=_pending(), timeout_s=ttl,
                                      code=HOLD_CODE, memo=f"{merchant} ({mcc})"[:200])]  # fmt: skip
                if fee:
                    specs.append(TransferSpec(line, self.ledger.account(FEES, conn=conn).id, fee,
                                              id=fee_hold(auth_id).id, asset="USD", flags=_pending(), timeout_s=ttl,
                                              code=HOLD_CODE, memo=f"cash advance fee {auth_id}"))  # fmt: skip
                holds.book(self.ledger, specs, conn=conn, what=f"authorization {auth_id}")
        except holds.LedgerRefused as exc:
            raise DomainError(
                f"declined: the card's available credit does not cover {format_minor(amount_minor + fee, 2)} USD",
                code="insufficient_credit",
            ) from exc
        except IntegrityError:
            found = self._by_key(access.client_id, key)
            if found is None:
                raise
            return self._replayed(found, digest)
        return self.get(auth_id)

    def _by_key(self, client_id: str, key: str) -> Authorization | None:
        t = schema.card_auths
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.client_id == client_id, t.c.idempotency_key == key)).first()
        return None if row is None else self._current(row)

    def _replayed(self, found: Authorization, digest: str) -> Authorization:
        t = schema.card_auths
        with self.ctx.engine.connect() as conn:
            known = conn.execute(select(t.c.request_sha256).where(t.c.id == found.id)).scalar()
        if known != digest:
            raise Conflict("this Idempotency-Key was used for another charge", code="idempotency_key_reused")
        return found

    def _current(self, row: Any) -> Authorization:
        """As recorded, or expired when the ledger expired its hold."""
        if row.status == AUTHORIZED and holds.status(self.ledger, auth_hold(row.id)) == "expired":
            return _auth_of(row, EXPIRED)
        return _auth_of(row)

    def get(self, auth_id: str, *, client_id: str | None = None) -> Authorization:
        t = schema.card_auths
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == auth_id)).first()
        if row is None or (client_id is not None and row.client_id != client_id):
            raise NotFound(f"no authorization {auth_id!r}", code="authorization_not_found")
        return self._current(row)

    def capture(self, auth_id: str, *, client_id: str | None = None) -> Authorization:
        """Post the authorization (and its fee); a purchase earns points."""
        auth = self.get(auth_id, client_id=client_id)
        if auth.status == CAPTURED:
            return auth
        if auth.status != AUTHORIZED:
            raise Conflict(f"authorization {auth_id} is {auth.status}", code="authorization_not_open")
        try:
            with write_transaction(self.ctx.engine) as conn:
                done = conn.execute(
                    update(schema.card_auths).where(schema.card_auths.c.id == auth_id,
                                                    schema.card_auths.c.status == AUTHORIZED)
                    .values(status=CAPTURED, updated_at_us=self.ctx.clock())
                )  # fmt: skip
                if done.rowcount != 1:
                    current = self.get(auth_id)
                    if current.status == CAPTURED:
                        return current
                    raise Conflict(f"authorization {auth_id} is {current.status}", code="authorization_not_open")
                holds.post(self.ledger, auth_hold(auth_id), conn=conn)
                if auth.fee_minor:
                    holds.post(self.ledger, fee_hold(auth_id), conn=conn)
                points = 0 if auth.cash_advance else int(
                    (Decimal(auth.amount_minor) / 100 * Decimal(self.settings.points_per_usd)).to_integral_value(
                        ROUND_FLOOR)
                )  # fmt: skip
                if points:
                    holds.book(
                        self.ledger,
                        [TransferSpec(self.ledger.account(POINTS_ISSUANCE, conn=conn).id,
                                      self.ledger.account(points_account(auth.customer), conn=conn).id, points,
                                      id=f"{HOLD_CODE}:{auth_id}:points", asset="PTS", code="points_earned",
                                      memo=f"points for {auth.merchant}")],
                        conn=conn, what=f"points for {auth_id}",
                    )  # fmt: skip
        except holds.LedgerRefused as exc:
            # Its hold expired meanwhile: nothing is captured.
            raise Conflict(f"authorization {auth_id} expired", code="authorization_not_open") from exc
        return self.get(auth_id)

    def void(self, auth_id: str, *, client_id: str | None = None) -> Authorization:
        auth = self.get(auth_id, client_id=client_id)
        if auth.status == VOIDED:
            return auth
        if auth.status != AUTHORIZED:
            raise Conflict(f"authorization {auth_id} is {auth.status}", code="authorization_not_open")
        try:
            with write_transaction(self.ctx.engine) as conn:
                done = conn.execute(
                    update(schema.card_auths).where(schema.card_auths.c.id == auth_id,
                                                    schema.card_auths.c.status == AUTHORIZED)
                    .values(status=VOIDED, updated_at_us=self.ctx.clock())
                )  # fmt: skip
                if done.rowcount == 1:
                    holds.void(self.ledger, auth_hold(auth_id), conn=conn)
                    if auth.fee_minor:
                        holds.void(self.ledger, fee_hold(auth_id), conn=conn)
        except holds.LedgerRefused as exc:
            raise Conflict(f"authorization {auth_id} expired", code="authorization_not_open") from exc
        current = self.get(auth_id)
        if current.status != VOIDED:
            raise Conflict(f"authorization {auth_id} is {current.status}", code="authorization_not_open")
        return current


def _pending() -> int:
    from andchain.ledger import TransferFlags

    return int(TransferFlags.PENDING)
