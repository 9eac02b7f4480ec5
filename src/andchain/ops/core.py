"""The operations store: persisted before anything is sent, advanced by workers, auditable.

An operation moves received -> submitted -> confirming -> succeeded, or ends failed
or cancelled. Terminal states never change: every update is conditional on the row
not being terminal, and an attempt to change one is a broken invariant. Each status
change is written to the history in the same transaction. Workers claim due
operations with a lease (`SELECT ... FOR UPDATE SKIP LOCKED` on PostgreSQL; on SQLite
the single writer's lock serialises them).
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import json
import logging
import os
import socket
from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from andchain.db import write_transaction
from andchain.devtools.processes import pid_alive
from andchain.errors import Conflict, DomainError, InvariantBroken, NotFound
from andchain.ledger.model import Clock, IdSource, system_clock_us
from andchain.ops import schema

log = logging.getLogger(__name__)

ATTEMPTS_MAX = 8
BACKOFF_BASE_S = 0.5
BACKOFF_MAX_S = 60.0
LEASE_S = 30.0
CLAIM_MAX = 500


class OpStatus(enum.StrEnum):
    RECEIVED = "received"
    SUBMITTED = "submitted"
    CONFIRMING = "confirming"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({OpStatus.SUCCEEDED, OpStatus.FAILED, OpStatus.CANCELLED})
ACTIVE = (OpStatus.RECEIVED, OpStatus.SUBMITTED, OpStatus.CONFIRMING)


@dataclass(frozen=True)
class Operation:
    id: str
    idempotency_key: str
    kind: str
    network: str | None
    status: OpStatus
    payload: dict[str, Any]
    state: dict[str, Any]
    result: dict[str, Any] | None
    error_code: str | None
    error_message: str | None
    attempts: int
    next_attempt_at_us: int
    created_at_us: int
    updated_at_us: int

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL


@dataclass(frozen=True)
class HistoryEntry:
    status: str
    detail: str
    at_us: int


def _canonical(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def _op_of(row: Any) -> Operation:
    m = row._mapping
    return Operation(
        id=m["id"],
        idempotency_key=m["idempotency_key"],
        kind=m["kind"],
        network=m["network"],
        status=OpStatus(m["status"]),
        payload=json.loads(m["payload"]),
        state=json.loads(m["state"]),
        result=json.loads(m["result"]) if m["result"] else None,
        error_code=m["error_code"],
        error_message=m["error_message"],
        attempts=int(m["attempts"]),
        next_attempt_at_us=int(m["next_attempt_at_us"]),
        created_at_us=int(m["created_at_us"]),
        updated_at_us=int(m["updated_at_us"]),
    )


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def backoff_us(attempts: int) -> int:
    return int(min(BACKOFF_MAX_S, BACKOFF_BASE_S * 2 ** max(0, attempts - 1)) * 1_000_000)


class Operations:
    def __init__(self, engine: Engine, *, clock: Clock = system_clock_us, ids: IdSource | None = None) -> None:
        self.engine = engine
        self.clock = clock
        self.ids = ids or IdSource(clock_us=clock)

    # ----------------------------------------------------------------- create

    def create(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any],
        *,
        network: str | None = None,
        conn: Connection | None = None,
    ) -> tuple[Operation, bool]:
        """Persist a new operation, or return the existing one for the same key and payload.

        Returns (operation, created). The same key with another payload is a conflict.
        """
        if not key or len(key) > 255:
            raise DomainError("an operation needs an idempotency key of 1-255 characters", code="invalid_request")
        text = _canonical(payload)
        digest = hashlib.sha256(text.encode()).hexdigest()
        now = self.clock()
        op_id = self.ids.new_id()
        values = dict(
            id=op_id,
            idempotency_key=key,
            kind=kind,
            network=network,
            status=OpStatus.RECEIVED.value,
            payload=text,
            state=json.dumps({"payload_sha256": digest}),
            result=None,
            error_code=None,
            error_message=None,
            attempts=0,
            next_attempt_at_us=now,
            lease_owner=None,
            lease_until_us=None,
            created_at_us=now,
            updated_at_us=now,
        )
        try:
            if conn is not None:
                with conn.begin_nested():
                    conn.execute(schema.operations.insert().values(**values))
                    self._log(conn, op_id, OpStatus.RECEIVED, f"{kind} received")
            else:
                with write_transaction(self.engine) as c:
                    c.execute(schema.operations.insert().values(**values))
                    self._log(c, op_id, OpStatus.RECEIVED, f"{kind} received")
        except IntegrityError:
            existing = self.by_key(key)
            if existing.kind != kind or _canonical(existing.payload) != text:
                raise Conflict(
                    f"idempotency key {key!r} was already used for another {existing.kind} request",
                    code="idempotency_key_reused",
                ) from None
            return existing, False
        if conn is not None:  # not committed yet: read it back through the caller's transaction
            return _op_of(conn.execute(select(schema.operations).where(schema.operations.c.id == op_id)).one()), True
        return self.get(op_id), True

    def _log(self, conn: Connection, op_id: str, status: OpStatus | str, detail: str) -> None:
        conn.execute(
            schema.history.insert().values(op_id=op_id, status=str(status), detail=detail[:2000], at_us=self.clock())
        )

    # ------------------------------------------------------------------ reads

    def get(self, op_id: str) -> Operation:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.operations).where(schema.operations.c.id == op_id)).first()
        if row is None:
            raise NotFound(f"no operation {op_id!r}", code="operation_not_found")
        return _op_of(row)

    def by_key(self, key: str) -> Operation:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.operations).where(schema.operations.c.idempotency_key == key)).first()
        if row is None:
            raise NotFound(f"no operation with idempotency key {key!r}", code="operation_not_found")
        return _op_of(row)

    def list(
        self,
        *,
        status: str | None = None,
        kind: str | None = None,
        network: str | None = None,
        limit: int = 100,
        after_id: str | None = None,
    ) -> builtins.list[Operation]:
        t = schema.operations
        query = select(t).order_by(t.c.id).limit(limit)
        if status:
            query = query.where(t.c.status == status)
        if kind:
            query = query.where(t.c.kind == kind)
        if network:
            query = query.where(t.c.network == network)
        if after_id:
            query = query.where(t.c.id > after_id)
        with self.engine.connect() as conn:
            return [_op_of(r) for r in conn.execute(query)]

    def history(self, op_id: str) -> builtins.list[HistoryEntry]:
        h = schema.history
        with self.engine.connect() as conn:
            rows = conn.execute(select(h.c.status, h.c.detail, h.c.at_us).where(h.c.op_id == op_id).order_by(h.c.seq))
            return [HistoryEntry(r.status, r.detail, int(r.at_us)) for r in rows]

    def counts(self) -> dict[str, int]:
        t = schema.operations
        with self.engine.connect() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(select(t.c.status, func.count()).group_by(t.c.status))}

    def stuck(self, older_than_s: float) -> builtins.list[Operation]:
        t = schema.operations
        cutoff = self.clock() - int(older_than_s * 1_000_000)
        with self.engine.connect() as conn:
            rows = conn.execute(
                select(t).where(t.c.status.in_([s.value for s in ACTIVE]), t.c.created_at_us < cutoff).order_by(t.c.id)
            )
            return [_op_of(r) for r in rows]

    # ------------------------------------------------------------ transitions

    def update(
        self,
        op: Operation,
        *,
        status: OpStatus | None = None,
        state: dict[str, Any] | None = None,
        result: dict[str, Any] | None = None,
        error: tuple[str, str] | None = None,
        retry_in_us: int | None = None,
        detail: str = "",
        conn: Connection | None = None,
        count_attempt: bool = False,
    ) -> Operation:
        """Change a non-terminal operation; the history records every status change."""
        new_status = status or op.status
        values: dict[str, Any] = {"updated_at_us": self.clock(), "status": new_status.value}
        if state is not None:
            values["state"] = json.dumps(state, default=str)
        if result is not None:
            values["result"] = json.dumps(result, default=str)
        if error is not None:
            values["error_code"], values["error_message"] = error[0], error[1][:2000]
        if count_attempt:
            values["attempts"] = op.attempts + 1
        if retry_in_us is not None:
            values["next_attempt_at_us"] = self.clock() + retry_in_us
        if new_status in TERMINAL:
            values["lease_owner"] = None
            values["lease_until_us"] = None

        def apply(c: Connection) -> None:
            t = schema.operations
            done = c.execute(
                update(t).where(t.c.id == op.id, t.c.status.notin_([s.value for s in TERMINAL])).values(**values)
            )
            if done.rowcount != 1:
                current = c.execute(select(t.c.status).where(t.c.id == op.id)).scalar()
                raise InvariantBroken(f"operation {op.id} is {current}: a terminal operation never changes")
            if new_status != op.status or detail:
                self._log(c, op.id, new_status, detail or f"{op.status} -> {new_status}")

        if conn is not None:
            apply(conn)
        else:
            with write_transaction(self.engine) as c:
                apply(c)
        return replace(
            op,
            status=new_status,
            updated_at_us=values["updated_at_us"],
            state=state if state is not None else op.state,
            result=result if result is not None else op.result,
            error_code=error[0] if error else op.error_code,
            error_message=error[1][:2000] if error else op.error_message,
            attempts=values.get("attempts", op.attempts),
            next_attempt_at_us=values.get("next_attempt_at_us", op.next_attempt_at_us),
        )

    def claim(
        self, owner: str, *, kinds: Sequence[str] | None = None, limit: int = CLAIM_MAX, lease_s: float = LEASE_S
    ) -> builtins.list[Operation]:
        """Lease due, unfinished operations to `owner` (never one another worker holds)."""
        t = schema.operations
        now = self.clock()
        due = and_(
            t.c.status.in_([s.value for s in ACTIVE]),
            t.c.next_attempt_at_us <= now,
            or_(t.c.lease_until_us.is_(None), t.c.lease_until_us < now, t.c.lease_owner == owner),
        )
        if kinds:
            due = and_(due, t.c.kind.in_(list(kinds)))
        query = select(t.c.id).where(due).order_by(t.c.created_at_us, t.c.id).limit(limit)
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        with write_transaction(self.engine) as conn:
            ids = [r[0] for r in conn.execute(query)]
            if not ids:
                return []
            conn.execute(
                update(t)
                .where(t.c.id.in_(ids))
                .values(lease_owner=owner, lease_until_us=now + int(lease_s * 1_000_000))
            )
            rows = conn.execute(select(t).where(t.c.id.in_(ids)).order_by(t.c.created_at_us, t.c.id)).all()
        return [_op_of(r) for r in rows]

    def release_dead_leases(self) -> int:
        """Free leases held by worker processes on this host that no longer exist (after a crash)."""
        t = schema.operations
        host = socket.gethostname()
        freed = 0
        with write_transaction(self.engine) as conn:
            owners = [
                r[0] for r in conn.execute(select(t.c.lease_owner).where(t.c.lease_owner.is_not(None)).distinct())
            ]
            for owner in owners:
                owner_host, _, pid = owner.rpartition(":")
                if owner_host == host and pid.isdigit() and not pid_alive(int(pid)):
                    done = conn.execute(
                        update(t).where(t.c.lease_owner == owner).values(lease_owner=None, lease_until_us=None)
                    )
                    freed += done.rowcount
        return freed

    def retry(self, op_id: str) -> Operation:
        """An operator asks for another attempt now (only for unfinished operations)."""
        op = self.get(op_id)
        if op.terminal:
            raise Conflict(
                f"operation {op_id} is {op.status}; a finished operation cannot be retried", code="operation_terminal"
            )
        return self.update(op, retry_in_us=0, detail="retry requested by operator")

    def cancel(self, op_id: str, reason: str = "cancelled by operator") -> Operation:
        """Cancel an operation that has not been sent anywhere yet."""
        op = self.get(op_id)
        if op.terminal:
            raise Conflict(f"operation {op_id} is already {op.status}", code="operation_terminal")
        if op.state.get("tx") or op.status != OpStatus.RECEIVED:
            raise Conflict(
                f"operation {op_id} has already been sent ({op.status}); it can no longer be cancelled",
                code="operation_in_flight",
            )
        return self.update(op, status=OpStatus.CANCELLED, error=("cancelled", reason), detail=reason)
