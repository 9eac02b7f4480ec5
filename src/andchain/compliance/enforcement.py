"""Freeze and seize on a lawful order (the GENIUS Act's "freeze, seize, burn and block" on lawful order).

A freeze, in one transaction: the order is recorded (its reference and authority), the party is marked
frozen (compliance refuses its every movement from then on), its ledger accounts are frozen (nothing
new debits them but a seizure), an audit entry and an event are written, and an operation is recorded
that freezes each of its addresses on the deposit token of every network where it has one (the
compliance role's `freeze`, address by address, retried and recovered like every chain operation).
Unfreezing mirrors it.

A seizure needs the party frozen. In one transaction: the order, the deposit account's available
balance moved to the bank's seizure account (`bank:usd:seized`, transfer code "seize", which a frozen
account allows), the audit entry, the event, and an operation that burns each address's whole
balance on chain (`seizeAndBurn` with the order's reference hashed to 32 bytes); each `Seized` event
books the holder's mirror to the seizure account. Supply and the ledger's outstanding tokens fall
together, so reconcile stays clean. What a client holds at a third-party custodian is outside the
bank's keys: the custodian's own freeze applies (not driven from here).

The same order (kind, client, reference) given again answers the same order: nothing is done twice.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from eth_utils import keccak
from sqlalchemy import Connection, select, update

from andchain.compliance import audit
from andchain.compliance import schema as t
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError, NotFound
from andchain.events import NewEvent
from andchain.events import append as append_events
from andchain.ledger import TransferSpec
from andchain.ledger.rules import SEIZE_CODE
from andchain.ops import Operation
from andchain.ops.holds import book
from andchain.tokens.model import BANK_SEIZED, dda_account
from andchain.tokens.service import TokenService

REFERENCE_MAX = 120
AUTHORITY_MAX = 200
KINDS = ("freeze", "unfreeze", "seize")


@dataclass(frozen=True)
class Order:
    id: str
    kind: str
    client_id: str
    reference: str
    authority: str
    operation_id: str | None
    details: dict[str, Any]
    by: str
    created_at_us: int


def _order_of(row: Any) -> Order:
    return Order(
        row.id,
        row.kind,
        row.client_id,
        row.reference,
        row.authority,
        row.operation_id,
        json.loads(row.details),
        row.by,
        int(row.created_at_us),
    )


def reference32(reference: str) -> str:
    """The order's reference as the contract's bytes32: its keccak-256 (kept beside the reference)."""
    return keccak(text=reference).hex()


class Enforcement:
    def __init__(self, tokens: TokenService) -> None:
        self.tokens = tokens
        self.ctx = tokens.ctx
        self.clients = tokens.clients
        self.compliance = tokens.clients.compliance
        self.ledger = tokens.ledger
        self.ops = tokens.ops

    # ---------------------------------------------------------------- reading

    def orders(self, client_id: str | None = None, limit: int = 100) -> list[Order]:
        query = select(t.orders).order_by(t.orders.c.created_at_us.desc()).limit(max(1, min(limit, 500)))
        if client_id is not None:
            query = query.where(t.orders.c.client_id == client_id)
        with self.ctx.engine.connect() as conn:
            return [_order_of(r) for r in conn.execute(query)]

    def order(self, order_id: str) -> Order:
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(t.orders).where(t.orders.c.id == order_id)).first()
        if row is None:
            raise NotFound(f"no order {order_id!r}", code="order_not_found")
        return _order_of(row)

    def targets(self, client_id: str) -> list[tuple[str, str]]:
        """Every address of the client on every network where the deposit token is deployed."""
        found: dict[tuple[str, str], None] = {}
        for wallet in self.clients.wallets(client_id):
            found[(wallet.network, wallet.address)] = None
        for registered in self.clients.addresses(client_id):
            found[(registered.network, registered.address)] = None
        usable = []
        for network, address in found:
            try:
                self.tokens.token_address(network)
            except DomainError:
                continue  # no deposit token there: nothing to freeze
            usable.append((network, address))
        return sorted(usable)

    def _accounts(self, client_id: str) -> list[str]:
        prefix = f"clients:{client_id.lower()}:"
        return [a.name for a in self.ledger.list_accounts(prefix=prefix, limit=1000)]

    # ------------------------------------------------------------------ orders

    def _check(self, reference: str, authority: str) -> None:
        for what, value, most in (("reference", reference, REFERENCE_MAX), ("authority", authority, AUTHORITY_MAX)):
            if not isinstance(value, str) or not value.strip() or len(value) > most or not value.isprintable():
                raise DomainError(
                    f"a lawful order names its {what} (1-{most} printable characters)", code="invalid_request"
                )

    def _existing(self, conn: Connection, kind: str, client_id: str, reference: str) -> Order | None:
        row = conn.execute(
            select(t.orders).where(
                t.orders.c.kind == kind, t.orders.c.client_id == client_id, t.orders.c.reference == reference
            )
        ).first()
        return None if row is None else _order_of(row)

    def carry_out(self, kind: str, client_ref: str, *, reference: str, authority: str, by: str) -> Order:
        """A lawful order of one of KINDS (the API's and the CLI's one entry)."""
        if kind == "seize":
            return self.seize(client_ref, reference=reference, authority=authority, by=by)
        if kind in ("freeze", "unfreeze"):
            return self._freeze(kind, client_ref, reference, authority, by)
        raise DomainError(f"an order is one of {', '.join(KINDS)}, was {kind!r}", code="invalid_request")

    def freeze(self, client_ref: str, *, reference: str, authority: str, by: str) -> Order:
        return self._freeze("freeze", client_ref, reference, authority, by)

    def unfreeze(self, client_ref: str, *, reference: str, authority: str, by: str) -> Order:
        return self._freeze("unfreeze", client_ref, reference, authority, by)

    def _in_progress(self, client_id: str) -> None:
        """One order at a time on chain: each operation plans from what the chain shows, so a freeze still
        retrying and an unfreeze after it could end in the wrong order."""
        for order in self.orders(client_id, limit=50):
            if order.operation_id and not self.ops.get(order.operation_id).terminal:
                raise Conflict(
                    f"order {order.reference} ({order.kind}) is still being carried out on chain (operation "
                    f"{order.operation_id}); the next order waits for it",
                    code="order_in_progress",
                )

    def _freeze(self, kind: str, client_ref: str, reference: str, authority: str, by: str) -> Order:
        self._check(reference, authority)
        client = self.clients.client(client_ref)
        targets = self.targets(client.id)
        accounts = self._accounts(client.id)
        order_id = self.ctx.ledger.ids.new_id()
        with write_transaction(self.ctx.engine) as conn:
            # The party's lock: no movement is admitted, and no other order decided, while this one is.
            self.compliance.lock(conn, [client.id])
            existing = self._existing(conn, kind, client.id, reference)
            if existing is not None:
                return existing
            self._in_progress(client.id)
            party = self.compliance.ensure_party(conn, client.id)
            if kind == "freeze" and party.frozen:
                raise Conflict(f"{client.name} is already frozen by order {party.frozen_order}", code="already_frozen")
            if kind == "unfreeze" and not party.frozen:
                raise Conflict(f"{client.name} is not frozen", code="not_frozen")
            changed_party = conn.execute(
                update(t.parties)
                .where(
                    t.parties.c.client_id == client.id,
                    t.parties.c.frozen_order.is_(None) if kind == "freeze" else t.parties.c.frozen_order.is_not(None),
                )
                .values(frozen_order=reference if kind == "freeze" else None, updated_at_us=self.ctx.clock())
            )
            if changed_party.rowcount != 1:
                raise Conflict(f"{client.name}'s freeze changed meanwhile; read it again", code="order_conflict")
            changed = self.ledger.set_frozen(accounts, kind == "freeze", conn=conn)
            op = self._operation(conn, kind, order_id, client.id, reference, targets) if targets else None
            details = {
                "accounts": accounts,
                "accounts_changed": changed,
                "addresses": [[n, a] for n, a in targets],
                "unfreezes": party.frozen_order if kind == "unfreeze" else None,
            }
            return self._record(conn, order_id, kind, client.id, reference, authority, op, details, by)

    def seize(self, client_ref: str, *, reference: str, authority: str, by: str) -> Order:
        self._check(reference, authority)
        client = self.clients.client(client_ref)
        targets = self.targets(client.id)
        order_id = self.ctx.ledger.ids.new_id()
        with write_transaction(self.ctx.engine) as conn:
            self.compliance.lock(conn, [client.id])
            existing = self._existing(conn, "seize", client.id, reference)
            if existing is not None:
                return existing
            self._in_progress(client.id)
            party = self.compliance.ensure_party(conn, client.id)
            if not party.frozen:
                raise Conflict(
                    f"{client.name} must be frozen on a lawful order before its funds are seized", code="not_frozen"
                )
            dda = self.ledger.account(dda_account(client.id), conn=conn)
            seized_minor = dda.available
            if seized_minor > 0:
                book(
                    self.ledger,
                    [
                        TransferSpec(
                            dda.id,
                            self.ledger.account(BANK_SEIZED, conn=conn).id,
                            seized_minor,
                            id=f"seize:{order_id}:dda",
                            code=SEIZE_CODE,
                            memo=f"seized on order {reference}"[:256],
                            asset="USD",
                        )
                    ],
                    conn=conn,
                    what=f"seizure {reference}",
                )
            op = self._operation(conn, "seize", order_id, client.id, reference, targets) if targets else None
            details = {
                "deposit_seized_minor": seized_minor,
                "addresses": [[n, a] for n, a in targets],
                "reference32": reference32(reference),
                "mode": "burn",
            }
            return self._record(conn, order_id, "seize", client.id, reference, authority, op, details, by)

    def _operation(
        self, conn: Connection, kind: str, order_id: str, client_id: str, reference: str, targets: list[tuple[str, str]]
    ) -> Operation:
        # The party is named `party`, not `client`: a lawful order is not shown to the client it concerns
        # (no operation event, no entry in its operations), so it is not tipped off.
        payload = {
            "party": client_id,
            "order": order_id,
            "reference": reference,
            "reference32": reference32(reference),
            "targets": [[n, a] for n, a in targets],
        }
        op, created = self.ops.create(
            kind, f"order:{order_id}", payload, request=payload, network=targets[0][0], conn=conn
        )
        if not created:
            raise Conflict(f"order {order_id} already has its operation", code="order_exists")
        return op

    def _record(
        self,
        conn: Connection,
        order_id: str,
        kind: str,
        client_id: str,
        reference: str,
        authority: str,
        op: Operation | None,
        details: dict[str, Any],
        by: str,
    ) -> Order:
        now = self.ctx.clock()
        conn.execute(
            t.orders.insert().values(
                id=order_id,
                kind=kind,
                client_id=client_id,
                reference=reference,
                authority=authority,
                operation_id=op.id if op else None,
                details=json.dumps(details, sort_keys=True),
                by=by[:120],
                created_at_us=now,
            )
        )
        body = {"order": order_id, "kind": kind, "reference": reference, "authority": authority, **details}
        audit.append(conn, self.ctx.clock, by, f"order.{kind}", f"client:{client_id}", body)
        # Bank-wide: the client is not tipped off by its own event feed.
        append_events(
            conn, [NewEvent("compliance.order_recorded", f"order:{order_id}", {**body, "client": client_id})], now
        )
        row = conn.execute(select(t.orders).where(t.orders.c.id == order_id)).one()
        return _order_of(row)
