"""ISO 20022 at the bank's edge: camt.054 credit notices fund deposit accounts; redemptions are paid out
with a pain.001 (the client's instruction) and a pacs.008 (the bank's interbank transfer).

Credit notices: only a BOOKed credit in USD funds a deposit account (a pending one never does, so a
mint can only spend money the bank has booked); each transaction of an entry is one credit, named by
the entry's reference and its place in the entry, booked once however often the notice arrives. The
creditor account names the client: its id or its deposit account's ledger name. A credit for no known
client, or whose debtor's name is a sanctions hit (an alert is opened), goes to the bank's suspense
account, never to a client. The same message id with other content is refused.

Payouts: a redemption that succeeded leaves its dollars in the client's deposit account; a payout sends
them to the client's account at another bank: the deposit account is debited (transfer
`payout:<redemption>`), a pain.001 and a pacs.008 are produced and validated against the official
XSDs, and the EndToEndId and UETR are kept with the redemption's burn transaction hash (both ways).
One payout per redemption.
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from sqlalchemy import Connection, select

from andchain.compliance import audit
from andchain.compliance import schema as t
from andchain.compliance.iso20022 import CreditNotice, EntryStatus, Payout, pacs008, pain001, parse_camt054
from andchain.compliance.service import SanctionsHit
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError, NotFound
from andchain.events import NewEvent
from andchain.events import append as append_events
from andchain.ledger import TransferSpec
from andchain.ops import OpStatus
from andchain.ops.holds import book
from andchain.tokens.model import BANK_CASH, BANK_SUSPENSE, dda_account
from andchain.tokens.service import TokenService

CREDITOR_MAX = 140


@dataclass(frozen=True)
class CreditResult:
    ref: str
    status: str  # booked | suspense | not_booked | ignored | refused
    client_id: str | None
    amount_minor: int
    currency: str
    end_to_end_id: str | None
    uetr: str | None
    reason: str | None = None

    def view(self) -> dict[str, Any]:
        return {
            "ref": self.ref,
            "status": self.status,
            "client": self.client_id,
            "amount_minor": self.amount_minor,
            "currency": self.currency,
            "end_to_end_id": self.end_to_end_id,
            "uetr": self.uetr,
            "reason": self.reason,
        }


class Payments:
    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens
        self.ctx = tokens.ctx
        self.clients = tokens.clients
        self.compliance = tokens.clients.compliance
        self.ledger = tokens.ledger

    # ------------------------------------------------------------ credits in

    def _client_of(self, account: str | None) -> str | None:
        if not account:
            return None
        ref = account.strip()
        if ref.startswith("clients:") and ref.endswith(":usd:dda"):
            ref = ref[len("clients:") : -len(":usd:dda")]
        try:
            return self.clients.client(ref.lower()).id
        except DomainError:
            return None

    def _message(self, conn: Connection, kind: str, message_id: str, direction: str, body: bytes) -> bool:
        """Record a message once; True when it was recorded before with the same content."""
        digest = hashlib.sha256(body).hexdigest()
        row = conn.execute(
            select(t.iso_messages.c.sha256).where(
                t.iso_messages.c.kind == kind, t.iso_messages.c.message_id == message_id
            )
        ).first()
        if row is not None:
            if row.sha256 != digest:
                raise Conflict(
                    f"{kind} message {message_id} was received before with other content", code="message_id_reused"
                )
            return True
        conn.execute(
            t.iso_messages.insert().values(
                id=self.ctx.ledger.ids.new_id(),
                kind=kind,
                message_id=message_id,
                direction=direction,
                sha256=digest,
                body=body.decode("utf-8", errors="replace"),
                created_at_us=self.ctx.clock(),
            )
        )
        return False

    def credit_notice(self, data: bytes, *, by: str) -> dict[str, Any]:
        """Book a camt.054: each booked USD credit to its client's deposit account (or to suspense)."""
        notice = parse_camt054(data)
        with write_transaction(self.ctx.engine) as conn:
            seen = self._message(conn, "camt.054", notice.message_id, "in", data)
        results = [self._credit(notice, r, by) for r in self._credits(notice)]
        if not seen:
            audit.record(
                self.ctx.engine,
                self.ctx.clock,
                by,
                "iso.camt054_received",
                f"camt.054:{notice.message_id}",
                {"entries": len(notice.entries), "results": [r.status for r in results]},
            )
        return {"message_id": notice.message_id, "replayed": seen, "credits": [r.view() for r in results]}

    def _credits(self, notice: CreditNotice) -> list[dict[str, Any]]:
        """Each credit of the notice with the key it is booked under, the same however the bank reports it
        again: the transaction's UETR, else the entry's reference on its account with the transaction's
        place. An entry with neither, or whose transactions do not add up to it, is refused, never guessed."""
        found: list[dict[str, Any]] = []
        for n, entry in enumerate(notice.entries):
            transactions = entry.transactions or ()
            problem = None
            amounts = [tx.amount_minor for tx in transactions]
            if not entry.entry_ref and not (transactions and all(tx.uetr for tx in transactions)):
                problem = "the entry has no reference (AcctSvcrRef or NtryRef) to book it once under"
            elif len(transactions) > 1 and None in amounts:
                problem = "a transaction of a batch entry has no amount of its own"
            elif transactions and None not in amounts and sum(a or 0 for a in amounts) != entry.amount_minor:
                problem = "the entry's transactions do not add up to its amount"
            if problem is not None or not transactions:
                ref = f"camt:{entry.account}:{entry.entry_ref or notice.message_id + ':' + str(n)}"
                found.append({"entry": entry, "tx": None, "ref": ref, "problem": problem})
                continue
            for i, tx in enumerate(transactions):
                ref = f"camt:uetr:{tx.uetr}" if tx.uetr else f"camt:{entry.account}:{entry.entry_ref}:{i}"
                found.append({"entry": entry, "tx": tx, "ref": ref, "problem": None})
        return found

    def _credit(self, notice: CreditNotice, item: dict[str, Any], by: str) -> CreditResult:
        entry, tx, ref = item["entry"], item["tx"], item["ref"][:100]
        amount = tx.amount_minor if tx is not None and tx.amount_minor is not None else entry.amount_minor
        currency = (tx.currency if tx is not None and tx.currency else None) or entry.currency
        e2e = tx.end_to_end_id if tx is not None else None
        uetr = tx.uetr if tx is not None else None
        base = {"ref": ref, "amount_minor": amount, "currency": currency, "end_to_end_id": e2e, "uetr": uetr}
        if not entry.credit or entry.reversal:
            return CreditResult(status="ignored", client_id=None, reason="not a credit", **base)
        if entry.status != EntryStatus.BOOK:
            return CreditResult(
                status="not_booked",
                client_id=None,
                reason=f"entry status {entry.status}: funds only when booked",
                **base,
            )
        if item["problem"] is not None:
            return CreditResult(status="refused", client_id=None, reason=item["problem"], **base)
        if currency != "USD" or amount <= 0:
            return CreditResult(
                status="refused", client_id=None, reason=f"a {currency} credit funds no USD account", **base
            )
        existing = self._payment(ref)
        if existing is not None:
            return existing
        client_id = self._client_of((tx.creditor_account if tx is not None else None) or entry.account)
        reason = None
        if client_id is None:
            reason = "no client has this account"
        else:
            try:
                self.compliance.screen(
                    client_id, flow="credit", names=(tx.debtor_name,) if tx and tx.debtor_name else ()
                )
            except SanctionsHit as hit:
                reason = hit.message
        if reason is not None or client_id is None:
            return self._to_suspense(notice, ref, client_id, amount, e2e, uetr, reason or "no client", base)

        def record(conn: Connection) -> None:
            self._record_payment(
                conn, ref, "in", e2e, uetr, client_id, amount, "booked", f"deposit:{ref}", notice, None
            )
            append_events(
                conn,
                [NewEvent("compliance.credit_booked", f"credit:{ref}", {**base, "client": client_id}, client_id)],
                self.ctx.clock(),
            )

        try:
            self.clients.deposit(client_id, amount, ref, memo=f"camt.054 {e2e or ref}", cash=False, before=record)
        except DomainError as exc:
            if exc.transient or exc.try_again:
                raise
            # A client that cannot be credited now (suspended, closed): the bank holds the money in suspense.
            return self._to_suspense(notice, ref, client_id, amount, e2e, uetr, exc.message, base)
        found = self._payment(ref)
        return found or CreditResult(status="booked", client_id=client_id, **base)

    def _to_suspense(
        self,
        notice: CreditNotice,
        ref: str,
        client_id: str | None,
        amount: int,
        e2e: str | None,
        uetr: str | None,
        reason: str,
        base: dict[str, Any],
    ) -> CreditResult:
        with write_transaction(self.ctx.engine) as conn:
            book(
                self.ledger,
                [
                    TransferSpec(
                        self.clients.account_id(BANK_CASH, conn),
                        self.clients.account_id(BANK_SUSPENSE, conn),
                        amount,
                        id=f"deposit:{ref}",
                        code="deposit_suspense",
                        memo=reason[:256],
                        asset="USD",
                    )
                ],
                conn=conn,
                what=f"credit {ref} to suspense",
            )
            if self._payment(ref, conn) is None:
                self._record_payment(
                    conn, ref, "in", e2e, uetr, client_id, amount, "suspense", f"deposit:{ref}", notice, reason
                )
        return CreditResult(status="suspense", client_id=client_id, reason=reason, **base)

    def _record_payment(
        self,
        conn: Connection,
        ref: str,
        direction: str,
        e2e: str | None,
        uetr: str | None,
        client_id: str | None,
        amount: int,
        status: str,
        transfer_id: str | None,
        notice: CreditNotice | None,
        reason: str | None,
        *,
        tx_hash: str | None = None,
        message_id: str | None = None,
    ) -> None:
        conn.execute(
            t.iso_payments.insert().values(
                ref=ref,
                direction=direction,
                end_to_end_id=e2e,
                uetr=uetr,
                client_id=client_id,
                amount_minor=str(amount),
                currency="USD",
                status=status,
                transfer_id=transfer_id,
                tx_hash=tx_hash,
                message_id=message_id or (notice.message_id if notice else ""),
                reason=reason,
                created_at_us=self.ctx.clock(),
            )
        )

    def _payment(self, ref: str, conn: Connection | None = None) -> CreditResult | None:
        query = select(t.iso_payments).where(t.iso_payments.c.ref == ref)
        if conn is None:
            with self.ctx.engine.connect() as c:
                row = c.execute(query).first()
        else:
            row = conn.execute(query).first()
        if row is None:
            return None
        return CreditResult(
            ref=row.ref,
            status=row.status,
            client_id=row.client_id,
            amount_minor=int(row.amount_minor),
            currency=row.currency,
            end_to_end_id=row.end_to_end_id,
            uetr=row.uetr,
            reason=row.reason,
        )

    def lookup(
        self, *, end_to_end_id: str | None = None, uetr: str | None = None, tx_hash: str | None = None
    ) -> list[dict[str, Any]]:
        """The payments carrying an EndToEndId, a UETR or relating to a chain transaction."""
        p = t.iso_payments
        query = select(p).limit(100)
        if end_to_end_id is not None:
            query = query.where(p.c.end_to_end_id == end_to_end_id)
        elif uetr is not None:
            query = query.where(p.c.uetr == uetr)
        elif tx_hash is not None:
            query = query.where(p.c.tx_hash == tx_hash.lower())
        else:
            raise DomainError("look a payment up by end_to_end_id, uetr or tx_hash", code="invalid_request")
        with self.ctx.engine.connect() as conn:
            return [
                {k: v for k, v in r._mapping.items() if k != "created_at_us"} | {"created_at_us": int(r.created_at_us)}
                for r in conn.execute(query)
            ]

    # ------------------------------------------------------------ payouts out

    def payout(
        self,
        redemption_id: str,
        *,
        creditor_name: str,
        creditor_account: str,
        creditor_agent_bic: str,
        by: str,
    ) -> dict[str, Any]:
        """Pay a redemption's dollars out to the client's account at another bank (pain.001 + pacs.008)."""
        ref = f"payout:{redemption_id}"[:200]
        done = self._payout_of(ref)
        if done is not None:
            return done
        try:
            op = self.tokens.ops.get(redemption_id)
        except DomainError:
            raise NotFound(f"no redemption {redemption_id!r}", code="redemption_not_found") from None
        if op.kind != "redeem":
            raise NotFound(f"no redemption {redemption_id!r}", code="redemption_not_found")
        if op.status != OpStatus.SUCCEEDED:
            raise DomainError(
                f"redemption {redemption_id} is {op.status}: only a completed one is paid out",
                code="redemption_not_done",
            )
        for what, value in (("creditor_name", creditor_name), ("creditor_account", creditor_account)):
            if not isinstance(value, str) or not value.strip() or len(value) > CREDITOR_MAX or not value.isprintable():
                raise DomainError(f"{what} is 1-{CREDITOR_MAX} printable characters", code="invalid_request")
        client_id = str(op.payload["client"])
        amount = int(op.payload["amount"])
        tx_hash = str((op.result or {}).get("tx_hash") or "").lower() or None
        client = self.clients.client(client_id)
        self.compliance.screen(client_id, flow="payout", names=(creditor_name,))
        cs = self.compliance.cs
        now = datetime.fromtimestamp(self.ctx.clock() / 1_000_000, tz=UTC)
        e2e = ("E2E" + redemption_id)[:35]
        uetr = str(uuid.UUID(bytes=hashlib.sha256(f"uetr:{redemption_id}".encode()).digest()[:16], version=4))
        payout = Payout(
            end_to_end_id=e2e,
            uetr=uetr,
            instruction_id=("I" + redemption_id)[:35],
            amount_minor=amount,
            currency="USD",
            debtor_name=client.name[:140],
            debtor_account=dda_account(client_id)[:34],
            debtor_agent_bic=cs.bank_bic,
            creditor_name=creditor_name,
            creditor_account=creditor_account,
            creditor_agent_bic=creditor_agent_bic,
            remittance=f"redemption {redemption_id}" + (f" tx {tx_hash}" if tx_hash else ""),
            requested_date=date(now.year, now.month, now.day),
        )
        message_id = ("M" + redemption_id)[:35]
        initiation = pain001(message_id, now, [payout], initiating_party=client.name[:140])
        transfer = pacs008(message_id, now, [payout], cs.bank_bic, creditor_agent_bic)
        with write_transaction(self.ctx.engine) as conn:
            if self._payout_of(ref, conn) is not None:
                return self._payout_of(ref, conn) or {}
            self.compliance.admit(conn, client_id, "payout", amount, ref)
            book(
                self.ledger,
                [
                    TransferSpec(
                        self.clients.account_id(dda_account(client_id), conn),
                        self.clients.account_id(BANK_CASH, conn),
                        amount,
                        id=ref,
                        code="payout",
                        memo=f"pacs.008 {e2e}",
                        asset="USD",
                    )
                ],
                conn=conn,
                what=f"payout of {redemption_id}",
            )
            self._message(conn, "pain.001", message_id, "out", initiation)
            self._message(conn, "pacs.008", message_id, "out", transfer)
            self._record_payment(
                conn, ref, "out", e2e, uetr, client_id, amount, "produced", ref, None, None,
                tx_hash=tx_hash, message_id=message_id,
            )  # fmt: skip
            details = {
                "redemption": redemption_id,
                "end_to_end_id": e2e,
                "uetr": uetr,
                "tx_hash": tx_hash,
                "amount_minor": amount,
            }
            audit.append(conn, self.ctx.clock, by, "iso.payout_produced", f"client:{client_id}", details)
            append_events(conn, [NewEvent("compliance.payout_produced", ref, details, client_id)], self.ctx.clock())
        return self._payout_of(ref) or {}

    def _payout_of(self, ref: str, conn: Connection | None = None) -> dict[str, Any] | None:
        def read(c: Connection) -> dict[str, Any] | None:
            row = c.execute(select(t.iso_payments).where(t.iso_payments.c.ref == ref)).first()
            if row is None:
                return None
            bodies = {
                m.kind: m.body
                for m in c.execute(
                    select(t.iso_messages.c.kind, t.iso_messages.c.body).where(
                        t.iso_messages.c.message_id == row.message_id
                    )
                )
            }
            return {
                "ref": row.ref,
                "client": row.client_id,
                "amount_minor": int(row.amount_minor),
                "end_to_end_id": row.end_to_end_id,
                "uetr": row.uetr,
                "tx_hash": row.tx_hash,
                "message_id": row.message_id,
                "pain001": bodies.get("pain.001"),
                "pacs008": bodies.get("pacs.008"),
            }

        if conn is not None:
            return read(conn)
        with self.ctx.engine.connect() as c:
            return read(c)
