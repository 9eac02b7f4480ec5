"""The operations store: persisted before anything is sent, advanced by workers, auditable.

An operation moves received -> submitted -> confirming -> succeeded, or ends failed
or cancelled; `needs_attention` is where one stops, its holds kept, when it cannot go
on by itself (value has left and neither completing nor compensating worked, or a
transient failure outlasted the retry budget) until an operator resumes it.

No lost update: every change is conditional on the version its writer read and bumps
it, so a stale copy (a request that read the operation before the worker recorded a
signed transaction, a second worker whose lease ran out) never overwrites a newer
state: its write fails with `StaleOperation` and changes nothing. Terminal states
never change. Each status change is written to the history, and its events to the event
log (`operation.<status>`, and `<kind>.succeeded|failed` for mints, redemptions and moves),
in the same transaction.
Workers claim due operations with a lease (`SELECT ... FOR UPDATE SKIP LOCKED` on
PostgreSQL; on SQLite the single writer's lock serialises them).
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import json
import logging
import os
import socket
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from typing import Any, NamedTuple

from sqlalchemy import Connection, Engine, and_, func, or_, select, update
from sqlalchemy.exc import IntegrityError

from andchain.config import OpsSettings
from andchain.db import check_plain_columns, in_chunks, insert_many, placeholder, write_transaction
from andchain.devtools.processes import pid_alive
from andchain.errors import Conflict, DomainError, InvariantBroken, NotFound
from andchain.events import store as events
from andchain.ledger.model import Clock, IdSource, system_clock_us
from andchain.logs import with_request_id
from andchain.ops import schema
from andchain.retry import Backoff

log = logging.getLogger(__name__)

CLAIM_MAX = 500
PAGE_MAX = 1000
KEY_LENGTH_MAX = 255
DETAIL_LENGTH_MAX = 2000


class _SomeStale(Exception):
    """A statement over several operations changed fewer rows than it had operations."""


class OpStatus(enum.StrEnum):
    RECEIVED = "received"
    SUBMITTED = "submitted"
    CONFIRMING = "confirming"
    NEEDS_ATTENTION = "needs_attention"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"


TERMINAL = frozenset({OpStatus.SUCCEEDED, OpStatus.FAILED, OpStatus.CANCELLED})
_TERMINAL_ORDER = (OpStatus.SUCCEEDED, OpStatus.FAILED, OpStatus.CANCELLED)
# What workers pick up by themselves.
ACTIVE = (OpStatus.RECEIVED, OpStatus.SUBMITTED, OpStatus.CONFIRMING)
# Not finished: its holds are kept and reconcile counts what it did on chain.
UNFINISHED = (*ACTIVE, OpStatus.NEEDS_ATTENTION)


class StaleOperation(Conflict):
    """The operation changed since the writer read it: nothing was written; read it again."""

    code = "operation_changed"
    try_again = True


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
    version: int = 1

    @property
    def terminal(self) -> bool:
        return self.status in TERMINAL

    @property
    def sent(self) -> bool:
        """Whether anything of this operation may have left the process (a signed transaction, a done step)."""
        return bool(self.state.get("tx") or self.state.get("done") or self.state.get("replaced"))


@dataclass(frozen=True)
class HistoryEntry:
    status: str
    detail: str
    at_us: int


def canonical_json(payload: Any) -> str:
    return json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)


def request_digest(request: Any) -> str:
    return hashlib.sha256(canonical_json(request).encode()).hexdigest()


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
        version=int(m["version"]),
    )


# What an operation's events repeat of its request (amounts in minor units, as strings).
_EVENT_FIELDS = ("client", "buyer", "seller", "network", "source", "destination", "memo", "token", "custodian", "asset")
_EVENT_AMOUNTS = ("amount", "cash", "shares")


def operation_clients(kind: str, payload: dict[str, Any]) -> list[str]:
    """The clients an operation concerns: its `client`; both parties of a payment (`from`, `to`), of
    a DvP (`buyer`, `seller`) or of an internal custody transfer (`from`, `to`, but not the bank's
    desk). A move's `from` and `to` are addresses, not clients."""
    if kind == "pay":
        fields: tuple[str, ...] = ("from", "to")
    elif kind == "custody_transfer":
        fields = ("from", "to")  # the two owners: clients, or the bank's desk (no client)
    else:
        fields = ("client", "buyer", "seller")
    found = [payload.get(f) for f in fields]
    return list(dict.fromkeys(c for c in found if isinstance(c, str) and c and c != "desk"))


def operation_events(op: Operation, status: OpStatus, previous: OpStatus | None) -> list[events.NewEvent]:
    """The events of one status change: one per client concerned (a client sees only its own), or one
    for the bank alone when the operation concerns no client."""
    p = op.payload
    request: dict[str, Any] = {k: p[k] for k in _EVENT_FIELDS if isinstance(p.get(k), str | int)}
    if op.kind in ("pay", "custody_transfer", "stablecoin_convert"):
        # The payer and payee; the two owners; the assets converted from and to (the amount in `from`'s units).
        request.update({k: p[k] for k in ("from", "to") if isinstance(p.get(k), str)})
    request.update({f"{k}_minor": str(p[k]) for k in _EVENT_AMOUNTS if isinstance(p.get(k), int)})
    data: dict[str, Any] = {
        "operation": op.id,
        "kind": op.kind,
        "network": op.network,
        "status": status.value,
        "previous_status": None if previous is None else previous.value,
        "request": request,
    }
    if status in (OpStatus.FAILED, OpStatus.NEEDS_ATTENTION, OpStatus.CANCELLED) and op.error_code:
        # The code only: an error's message can name internal systems (a node's address).
        data["error_code"] = op.error_code
    if status == OpStatus.SUCCEEDED and op.result:
        data.update({k: op.result[k] for k in ("tx_hash", "block") if k in op.result})
    types = [f"operation.{status.value}"]
    if op.kind in events.OUTCOME_KINDS and status in (OpStatus.SUCCEEDED, OpStatus.FAILED):
        types.append(f"{op.kind}.{status.value}")
    audience: list[str | None] = [*operation_clients(op.kind, p)] or [None]
    return [events.NewEvent(t, op.id, data, client) for t in types for client in audience]


def _op_of_values(values: dict[str, Any]) -> Operation:
    return Operation(
        id=values["id"],
        idempotency_key=values["idempotency_key"],
        kind=values["kind"],
        network=values["network"],
        status=OpStatus(values["status"]),
        payload=json.loads(values["payload"]),
        state=json.loads(values["state"]),
        result=None,
        error_code=None,
        error_message=None,
        attempts=values["attempts"],
        next_attempt_at_us=values["next_attempt_at_us"],
        created_at_us=values["created_at_us"],
        updated_at_us=values["updated_at_us"],
        version=values["version"],
    )


class NewOperation(NamedTuple):
    """What `Operations.create_many` makes of each: `create`'s arguments."""

    kind: str
    key: str
    payload: dict[str, Any]
    request: Any = None
    network: str | None = None
    state: dict[str, Any] | None = None


def worker_identity() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


Release = Callable[[Operation, Connection], None]


class Operations:
    def __init__(
        self,
        engine: Engine,
        *,
        clock: Clock = system_clock_us,
        ids: IdSource | None = None,
        settings: OpsSettings | None = None,
    ) -> None:
        self.engine = engine
        self.clock = clock
        self.ids = ids or IdSource(clock_us=clock)
        self.settings = settings or OpsSettings()
        self.backoff = Backoff(self.settings.backoff_base_s, self.settings.backoff_max_s)

    def backoff_us(self, attempts: int) -> int:
        return self.backoff.delay_us(attempts)

    # ----------------------------------------------------------------- create

    def _new_values(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any],
        request: Any,
        network: str | None,
        state: dict[str, Any] | None,
    ) -> dict[str, Any]:
        """The row of a new operation (its key checked)."""
        if not isinstance(key, str) or not key or len(key) > KEY_LENGTH_MAX or "\x00" in key:
            raise DomainError(
                f"an operation needs an idempotency key of 1-{KEY_LENGTH_MAX} characters", code="invalid_request"
            )
        digest = request_digest(payload if request is None else request)
        now = self.clock()
        op_id = self.ids.new_id()
        return dict(
            id=op_id,
            idempotency_key=key,
            kind=kind,
            network=network,
            status=OpStatus.RECEIVED.value,
            payload=canonical_json(payload),
            # The request that asked for it (when a request did), to find its log lines.
            state=canonical_json(with_request_id(state or {})),
            result=None,
            error_code=None,
            error_message=None,
            attempts=0,
            next_attempt_at_us=now,
            lease_owner=None,
            lease_until_us=None,
            created_at_us=now,
            updated_at_us=now,
            version=1,
            request_sha256=digest,
        )

    def create_many(self, conn: Connection, new: Sequence[NewOperation]) -> builtins.list[Operation] | None:
        """Several new operations in the caller's transaction, as `create` would make each (its `state`
        included), in one statement each for the rows, their history and their events; None, and nothing
        written, when any key is already used (or used twice here): the caller creates them one by one,
        which tells which one names an operation already."""
        if len({n.key for n in new}) != len(new):
            return None
        rows = [self._new_values(n.kind, n.key, n.payload, n.request, n.network, n.state) for n in new]
        if not rows:
            return []
        try:
            with conn.begin_nested():
                insert_many(conn, schema.operations, rows)
        except IntegrityError:
            return None
        created = [_op_of_values(values) for values in rows]
        now = self.clock()
        insert_many(
            conn,
            schema.history,
            [{"op_id": op.id, "status": str(OpStatus.RECEIVED), "detail": f"{op.kind} received", "at_us": now}
             for op in created],
        )  # fmt: skip
        events.append(conn, [e for op in created for e in operation_events(op, OpStatus.RECEIVED, None)], now)
        return created

    def create(
        self,
        kind: str,
        key: str,
        payload: dict[str, Any],
        *,
        request: Any = None,
        network: str | None = None,
        state: dict[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> tuple[Operation, bool]:
        """Persist a new operation, or return the existing one for the same key and request.

        `request` is what the caller sent (defaults to the payload): the same key with
        another request is a conflict, whatever the payload derived from it at the time.
        With `conn` the operation joins the caller's transaction, so that whatever the
        caller reserves for it (a ledger hold) commits or rolls back with it.
        Returns (operation, created).
        """
        values = self._new_values(kind, key, payload, request, network, state)
        op_id, digest = values["id"], values["request_sha256"]

        def insert(c: Connection) -> Operation | None:
            try:
                with c.begin_nested():
                    c.execute(schema.operations.insert().values(**values))
                    self._log(c, op_id, OpStatus.RECEIVED, f"{kind} received")
                    self._emit(c, _op_of_values(values), OpStatus.RECEIVED, None)
            except IntegrityError:
                row = c.execute(select(schema.operations).where(schema.operations.c.idempotency_key == key)).first()
                if row is None:
                    raise
                existing = _op_of(row)
                known = row._mapping["request_sha256"] or request_digest(existing.payload)
                if existing.kind != kind or known != digest:
                    raise Conflict(
                        f"idempotency key {key!r} was already used for another {existing.kind} request",
                        code="idempotency_key_reused",
                        operation=existing.id,
                    ) from None
                return existing
            return None

        if conn is not None:
            existing = insert(conn)
            if existing is not None:
                return existing, False
            return _op_of(conn.execute(select(schema.operations).where(schema.operations.c.id == op_id)).one()), True
        with write_transaction(self.engine) as own:
            existing = insert(own)
            if existing is not None:
                return existing, False
            row = own.execute(select(schema.operations).where(schema.operations.c.id == op_id)).one()
        return _op_of(row), True

    def replay(self, kind: str, key: str, request: Any) -> Operation | None:
        """The operation a key already names, if any: the same request returns it (whatever has changed
        since: a retry must find its operation), another request under the key is a conflict."""
        existing = self.find_by_key(key)
        if existing is None:
            return None
        return self.create(kind, key, existing.payload, request=request, network=existing.network)[0]

    def _log(self, conn: Connection, op_id: str, status: OpStatus | str, detail: str) -> None:
        conn.execute(
            schema.history.insert().values(
                op_id=op_id, status=str(status), detail=detail[:DETAIL_LENGTH_MAX], at_us=self.clock()
            )
        )

    def _emit(self, conn: Connection, op: Operation, status: OpStatus, previous: OpStatus | None) -> None:
        """The status change's events, in the transaction that records it."""
        events.append(conn, operation_events(op, status, previous), self.clock())

    # ------------------------------------------------------------------ reads

    def get(self, op_id: str, *, conn: Connection | None = None) -> Operation:
        query = select(schema.operations).where(schema.operations.c.id == op_id)
        if conn is not None:
            row = conn.execute(query).first()
        else:
            with self.engine.connect() as own:
                row = own.execute(query).first()
        if row is None:
            raise NotFound(f"no operation {op_id!r}", code="operation_not_found")
        return _op_of(row)

    def by_key(self, key: str) -> Operation:
        with self.engine.connect() as conn:
            row = conn.execute(select(schema.operations).where(schema.operations.c.idempotency_key == key)).first()
        if row is None:
            raise NotFound(f"no operation with idempotency key {key!r}", code="operation_not_found")
        return _op_of(row)

    def keys_in_use(self, keys: Sequence[str]) -> set[str]:
        """Which of these idempotency keys name an operation (a batch of requests looks its keys up at once)."""
        t = schema.operations
        with self.engine.connect() as conn:
            return {
                row.idempotency_key
                for chunk in in_chunks(sorted(set(keys)))
                for row in conn.execute(select(t.c.idempotency_key).where(t.c.idempotency_key.in_(chunk)))
            }

    def find_by_key(self, key: str) -> Operation | None:
        try:
            return self.by_key(key)
        except NotFound:
            return None

    def list(
        self,
        *,
        status: str | Sequence[str] | None = None,
        kind: str | None = None,
        network: str | None = None,
        limit: int = 100,
        after_id: str | None = None,
    ) -> builtins.list[Operation]:
        t = schema.operations
        query = select(t).order_by(t.c.id).limit(max(1, min(limit, PAGE_MAX)))
        if isinstance(status, str):
            query = query.where(t.c.status == status)
        elif status:
            query = query.where(t.c.status.in_([str(s) for s in status]))
        if kind:
            query = query.where(t.c.kind == kind)
        if network:
            query = query.where(t.c.network == network)
        if after_id:
            query = query.where(t.c.id > after_id)
        with self.engine.connect() as conn:
            return [_op_of(r) for r in conn.execute(query)]

    def iterate(
        self, *, status: str | Sequence[str] | None = None, kind: str | None = None, network: str | None = None
    ) -> Iterator[Operation]:
        """Every matching operation, page by page: no cap on how many there are."""
        after: str | None = None
        while True:
            page = self.list(status=status, kind=kind, network=network, limit=PAGE_MAX, after_id=after)
            yield from page
            if len(page) < PAGE_MAX:
                return
            after = page[-1].id

    def unfinished(self, *, kind: str | None = None, network: str | None = None) -> Iterator[Operation]:
        return self.iterate(status=[s.value for s in UNFINISHED], kind=kind, network=network)

    def history(self, op_id: str) -> builtins.list[HistoryEntry]:
        h = schema.history
        with self.engine.connect() as conn:
            rows = conn.execute(select(h.c.status, h.c.detail, h.c.at_us).where(h.c.op_id == op_id).order_by(h.c.seq))
            return [HistoryEntry(r.status, r.detail, int(r.at_us)) for r in rows]

    def counts(self) -> dict[str, int]:
        t = schema.operations
        with self.engine.connect() as conn:
            return {r[0]: int(r[1]) for r in conn.execute(select(t.c.status, func.count()).group_by(t.c.status))}

    def any_active(self) -> bool:
        """Whether any operation is not yet at an end: the first one found in the status index answers. For a
        caller that asks again and again until all are done (counting them all each time is what a
        PostgreSQL server spent most on while a batch settled)."""
        t = schema.operations
        with self.engine.connect() as conn:
            return (
                conn.execute(select(t.c.id).where(t.c.status.in_([s.value for s in ACTIVE])).limit(1)).first()
                is not None
            )

    def stuck(self, older_than_s: float) -> Iterator[Operation]:
        """Active operations older than `older_than_s` (needs_attention ones are reported on their own)."""
        cutoff = self.clock() - int(older_than_s * 1_000_000)
        for op in self.iterate(status=[s.value for s in ACTIVE]):
            if op.created_at_us < cutoff:
                yield op

    # ------------------------------------------------------------ transitions

    def _values(
        self,
        op: Operation,
        *,
        status: OpStatus | None,
        state: dict[str, Any] | None,
        result: dict[str, Any] | None,
        error: tuple[str, str] | None,
        retry_in_us: int | None,
        count_attempt: bool,
        reset_attempts: bool,
    ) -> dict[str, Any]:
        if op.terminal:
            raise InvariantBroken(f"operation {op.id} is {op.status}: a terminal operation never changes")
        now = self.clock()
        new_status = status or op.status
        values: dict[str, Any] = {"updated_at_us": now, "status": new_status.value, "version": op.version + 1}
        if state is not None:
            values["state"] = canonical_json(state)
        if result is not None:
            values["result"] = canonical_json(result)
        if error is not None:
            values["error_code"], values["error_message"] = error[0], error[1][:DETAIL_LENGTH_MAX]
        if reset_attempts:
            values["attempts"] = 0
        elif count_attempt:
            values["attempts"] = op.attempts + 1
        if retry_in_us is not None:
            values["next_attempt_at_us"] = now + retry_in_us
        if new_status in TERMINAL or new_status == OpStatus.NEEDS_ATTENTION:
            values["lease_owner"] = None
            values["lease_until_us"] = None
        return values

    def _change(self, op: Operation, change: dict[str, Any]) -> tuple[dict[str, Any], Callable[[], Operation]]:
        """The columns a change sets, and the operation as it will be once they are set."""
        state, result = change.get("state"), change.get("result")
        values = self._values(
            op,
            status=change.get("status"),
            state=state,
            result=result,
            error=change.get("error"),
            retry_in_us=change.get("retry_in_us"),
            count_attempt=change.get("count_attempt", False),
            reset_attempts=change.get("reset_attempts", False),
        )

        def changed() -> Operation:
            return replace(
                op,
                status=OpStatus(values["status"]),
                updated_at_us=values["updated_at_us"],
                state=state if state is not None else op.state,
                result=result if result is not None else op.result,
                error_code=values.get("error_code", op.error_code),
                error_message=values.get("error_message", op.error_message),
                attempts=values.get("attempts", op.attempts),
                next_attempt_at_us=values.get("next_attempt_at_us", op.next_attempt_at_us),
                version=values["version"],
            )

        return values, changed

    def update_if_current(
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
        reset_attempts: bool = False,
    ) -> Operation | None:
        """Change `op` if it is still at the version this copy was read at; None (and no change) if not."""
        values, changed = self._change(
            op,
            {
                "status": status,
                "state": state,
                "result": result,
                "error": error,
                "retry_in_us": retry_in_us,
                "count_attempt": count_attempt,
                "reset_attempts": reset_attempts,
            },
        )

        def apply(c: Connection) -> bool:
            t = schema.operations
            done = c.execute(
                update(t)
                # Each terminal status compared on its own: an IN list is rendered again at every execution.
                .where(t.c.id == op.id, t.c.version == op.version, *(t.c.status != s.value for s in _TERMINAL_ORDER))
                .values(**values)
            )
            if done.rowcount != 1:
                return False
            self._write_trails(c, [(op, changed(), detail)])
            return True

        if conn is not None:
            applied = apply(conn)
        else:
            with write_transaction(self.engine) as c:
                applied = apply(c)
        if not applied:
            log.info("stale operation write skipped op=%s version=%d", op.id, op.version)
            return None
        return changed()

    def update_many_if_current(
        self, conn: Connection, changes: Sequence[tuple[Operation, dict[str, Any]]]
    ) -> builtins.list[Operation | None]:
        """Several operations changed in the caller's transaction, each as `update_if_current` would (the same
        keyword arguments, `conn` aside): one result per change, None for a copy gone stale (and no change).

        Changes that set the same columns go in one statement run over all of them, then the history rows
        and the events of all in one statement each. When a statement changes fewer rows than it has
        operations (a copy gone stale), its savepoint is rolled back and those operations are changed one
        by one, which tells which one it was."""
        if len({op.id for op, _ in changes}) != len(changes):  # one operation changed twice: in order
            return [self.update_if_current(op, conn=conn, **change) for op, change in changes]
        results: list[Operation | None] = [None] * len(changes)
        groups: dict[tuple[str, ...], list[tuple[int, dict[str, Any]]]] = {}
        planned: list[Callable[[], Operation]] = []
        for index, (op, change) in enumerate(changes):
            values, changed = self._change(op, change)
            planned.append(changed)
            groups.setdefault(tuple(sorted(values)), []).append((index, values))
        mark = placeholder(conn.dialect)
        terminal = tuple(s.value for s in _TERMINAL_ORDER)
        table = schema.operations
        one_by_one: list[int] = []
        for columns, members in groups.items():
            if len(members) == 1:
                one_by_one.append(members[0][0])
                continue
            # The statement update_if_current runs, with the parameters of all of them given to the driver as
            # they are: the columns set are the operations table's own (text and integers).
            check_plain_columns(conn.dialect, table, columns)
            statement = (
                f"UPDATE {table.name} SET {', '.join(f'{name} = {mark}' for name in columns)} "
                f"WHERE id = {mark} AND version = {mark} AND status NOT IN ({', '.join([mark] * len(terminal))})"
            )
            params = [
                (*(values[name] for name in columns), changes[i][0].id, changes[i][0].version, *terminal)
                for i, values in members
            ]
            try:
                with conn.begin_nested():
                    if conn.exec_driver_sql(statement, params).rowcount != len(params):
                        raise _SomeStale
            except _SomeStale:
                one_by_one.extend(i for i, _ in members)
                continue
            for i, _ in members:
                results[i] = planned[i]()
        for i in sorted(one_by_one):  # each writes its own history and events
            op, change = changes[i]
            results[i] = self.update_if_current(op, conn=conn, **change)
        direct = set(one_by_one)
        self._write_trails(
            conn,
            [
                (op, updated, change.get("detail", ""))
                for i, ((op, change), updated) in enumerate(zip(changes, results, strict=True))
                if updated is not None and i not in direct
            ],
        )
        return results

    def _write_trails(self, conn: Connection, changed: Sequence[tuple[Operation, Operation, str]]) -> None:
        """The history rows and events of changes applied (the operation before, after, and the change's
        detail), one statement each: a row for a new status or a detail, events for a new status."""
        now = self.clock()
        logged: list[dict[str, Any]] = []
        emitted: list[events.NewEvent] = []
        for before, after, detail in changed:
            if after.status != before.status or detail:
                text = detail or f"{before.status} -> {after.status}"
                logged.append(
                    {"op_id": before.id, "status": str(after.status), "detail": text[:DETAIL_LENGTH_MAX], "at_us": now}
                )
            if after.status != before.status:
                emitted.extend(operation_events(after, after.status, before.status))
        if logged:
            insert_many(conn, schema.history, logged)
        events.append(conn, emitted, now)

    def update(self, op: Operation, **changes: Any) -> Operation:
        """Like update_if_current, but a stale copy raises StaleOperation (and nothing changed)."""
        updated = self.update_if_current(op, **changes)
        if updated is None:
            current = self.get(op.id, conn=changes.get("conn"))
            raise StaleOperation(
                f"operation {op.id} changed since it was read (version {op.version}, now {current.version}, "
                f"{current.status}); read it again",
                operation=op.id,
            )
        return updated

    def claim(
        self, owner: str, *, kinds: Sequence[str] | None = None, limit: int = CLAIM_MAX, lease_s: float | None = None
    ) -> builtins.list[Operation]:
        """Lease due, active operations to `owner` (never one another live worker holds)."""
        t = schema.operations
        now = self.clock()
        lease_us = int((lease_s if lease_s is not None else self.settings.lease_s) * 1_000_000)
        due = and_(
            t.c.status.in_([s.value for s in ACTIVE]),
            t.c.next_attempt_at_us <= now,
            or_(t.c.lease_until_us.is_(None), t.c.lease_until_us < now, t.c.lease_owner == owner),
        )
        if kinds:
            due = and_(due, t.c.kind.in_(list(kinds)))
        query = select(t.c.id).where(due).order_by(t.c.next_attempt_at_us, t.c.id).limit(limit)
        if self.engine.dialect.name == "postgresql":
            query = query.with_for_update(skip_locked=True)
        with write_transaction(self.engine) as conn:
            ids = [r[0] for r in conn.execute(query)]
            if not ids:
                return []
            conn.execute(update(t).where(t.c.id.in_(ids)).values(lease_owner=owner, lease_until_us=now + lease_us))
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

    def attention(
        self,
        op: Operation,
        code: str,
        reason: str,
        *,
        state: dict[str, Any] | None = None,
        conn: Connection | None = None,
    ) -> Operation | None:
        """Stop an operation where an operator sees it; its holds stay reserved."""
        log.error("operation needs attention op=%s kind=%s code=%s reason=%s", op.id, op.kind, code, reason)
        return self.update_if_current(
            op,
            status=OpStatus.NEEDS_ATTENTION,
            state=state,
            error=(code, reason),
            detail=f"needs attention: {reason}",
            conn=conn,
        )

    def retry(self, op_id: str) -> Operation:
        """An operator asks for another attempt now; an operation in needs_attention resumes with a fresh budget."""
        for _ in range(3):
            op = self.get(op_id)
            if op.terminal:
                raise Conflict(
                    f"operation {op_id} is {op.status}; a finished operation cannot be retried",
                    code="operation_terminal",
                )
            if op.status == OpStatus.NEEDS_ATTENTION:
                resumed = OpStatus.SUBMITTED if op.sent else OpStatus.RECEIVED
                done = self.update_if_current(
                    op, status=resumed, retry_in_us=0, reset_attempts=True, detail="resumed by operator"
                )
            else:
                done = self.update_if_current(
                    op, retry_in_us=0, reset_attempts=True, detail="retry requested by operator"
                )
            if done is not None:
                return done
        raise StaleOperation(f"operation {op_id} keeps changing; try again", operation=op_id)

    def cancel(self, op_id: str, reason: str = "cancelled by operator", *, release: Release | None = None) -> Operation:
        """Cancel an operation that has sent nothing, releasing its holds, in one transaction.

        The check that nothing was sent, the cancellation and the release commit together:
        a worker that recorded a signed transaction in between makes this write stale,
        and a worker that comes after finds the operation cancelled.
        """
        with write_transaction(self.engine) as conn:
            op = self.get(op_id, conn=conn)
            if op.terminal:
                raise Conflict(f"operation {op_id} is already {op.status}", code="operation_terminal")
            if op.sent:
                raise Conflict(
                    f"operation {op_id} has already sent a transaction ({op.status}); it can no longer be "
                    "cancelled: let it finish, or retry it",
                    code="operation_in_flight",
                )
            done = self.update_if_current(
                op, status=OpStatus.CANCELLED, error=("cancelled", reason), detail=reason, conn=conn
            )
            if done is None:
                raise StaleOperation(f"operation {op_id} changed while being cancelled; try again", operation=op_id)
            if release is not None:
                release(done, conn)
        return done
