"""The event log: every state change a user cares about, appended in the transaction that makes it.

An event is written by the code that makes the change, on the change's own connection,
so that the change and its event commit or roll back together: a rolled-back change
leaves no event, and a committed one always has its event.

Ids come from one autoincrement sequence and only grow, but two things make a naive
reader ("everything after the last id I saw") lose events, and both are handled here:

- **Gaps.** A transaction that rolls back has used ids that never appear. A reader must
  not treat a gap as the end of anything: it reads again from its last id, never from
  "the last id plus one".
- **Commits out of order (PostgreSQL).** Ids are taken when a row is inserted, not when
  its transaction commits, so id 11 can be visible while id 10 is still in flight and
  commits a moment later; a reader that moved its cursor to 11 would never see 10. So
  readers read only up to the *horizon*: below the smallest id a transaction still in
  flight may hold. Every transaction that appends events first takes a shared
  transaction-scoped advisory lock keyed by the sequence's value at that moment (a floor
  of every id it then takes); the lock is released when it commits or rolls back. A
  reader reads the sequence's value S, then the smallest such key L held by anyone, and
  returns only ids <= min(S, L). Any id at or below that belongs to a transaction that
  had already ended when the reader looked: visible if it committed. (The sequence must
  keep the default CACHE 1, so that its value bounds every id handed out.) On SQLite
  writers are serialised, so ids commit in order and the horizon is simply the last id.

A reader therefore returns, with its page, the position to read from next: the last id
it returned, or, when the page was not full, the horizon (every id up to it is settled,
whether it matched the filters or not).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, Engine, and_, func, or_, select, text
from sqlalchemy.sql.elements import ColumnElement

from andchain.db import insert_many
from andchain.errors import DomainError, InvariantBroken
from andchain.events import schema

T = schema.events

PAGE_MAX = 1000
PAYLOAD_BYTES_MAX = 16_384
SUBJECT_LENGTH_MAX = 300
CLIENT_ID_LENGTH_MAX = 64
TYPES_MAX = 50
# Advisory lock keys of in-flight event writers: this base plus the sequence's value.
IN_FLIGHT_LOCK_BASE = 0x616E_6476_0000_0000

OPERATION_STATUSES = ("received", "submitted", "confirming", "needs_attention", "succeeded", "failed", "cancelled")
# The kinds of operation that also get an event of their own when they end.
OUTCOME_KINDS = (
    "mint",
    "redeem",
    "move",
    "custody_withdrawal",
    "custody_transfer",
    "stablecoin_convert",
    "desk_trade",
    "freeze",
    "unfreeze",
    "seize",
)
EVENT_TYPES: tuple[str, ...] = (
    *(f"operation.{s}" for s in OPERATION_STATUSES),
    *(f"{kind}.{outcome}" for kind in OUTCOME_KINDS for outcome in ("succeeded", "failed")),
    "payment.received",
    "custody.deposit_credited",
    "desk.risk_denied",
    "desk.quote_expired",
    "desk.state_changed",
    "reconcile.break",
    "reconcile.resolved",
    "alert",
    "alert.cleared",
    "compliance.kyc_changed",
    "compliance.list_loaded",
    "compliance.alert_opened",
    "compliance.alert_assigned",
    "compliance.alert_closed",
    "compliance.order_recorded",
    "compliance.credit_booked",
    "compliance.payout_produced",
)
FAMILIES = frozenset(t.split(".", 1)[0] for t in EVENT_TYPES)


@dataclass(frozen=True)
class NewEvent:
    """An event to append: what happened, to what, for whom (None: the bank alone)."""

    type: str
    subject: str
    payload: dict[str, Any]
    client_id: str | None = None


@dataclass(frozen=True)
class Event:
    id: int
    type: str
    occurred_at_us: int
    client_id: str | None
    subject: str
    payload: dict[str, Any]

    def view(self) -> dict[str, Any]:
        """The event as the API, the stream and webhooks show it."""
        return {
            "id": self.id,
            "type": self.type,
            "occurred_at": iso(self.occurred_at_us),
            "client_id": self.client_id,
            "subject": self.subject,
            "data": self.payload,
        }


@dataclass(frozen=True)
class Page:
    events: list[Event]
    # Where to read from next: the last event returned, or the horizon when the page was not full.
    position: int
    more: bool


def iso(us: int) -> str:
    return datetime.fromtimestamp(us // 1_000_000, tz=UTC).replace(microsecond=us % 1_000_000).isoformat()


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False)


@dataclass(frozen=True)
class TypeFilter:
    """Exact types, and families ("operation.*" matches every operation.<status>)."""

    exact: frozenset[str]
    families: frozenset[str]

    def matches(self, event_type: str) -> bool:
        return event_type in self.exact or event_type.split(".", 1)[0] in self.families

    def clause(self) -> ColumnElement[bool]:
        parts: list[ColumnElement[bool]] = []
        if self.exact:
            parts.append(T.c.type.in_(sorted(self.exact)))
        for family in sorted(self.families):
            parts.append(or_(T.c.type == family, T.c.type.like(f"{family}.%")))
        return or_(*parts)

    def as_list(self) -> list[str]:
        return sorted(self.exact) + sorted(f"{f}.*" for f in self.families)


def type_filter(values: Iterable[str] | None) -> TypeFilter | None:
    """Parse `operation.succeeded` / `operation.*` filters; None or empty: every type."""
    if values is None:
        return None
    exact: set[str] = set()
    families: set[str] = set()
    for value in values:
        if not isinstance(value, str):
            raise DomainError(f"an event type is text, was {value!r}", code="unknown_event_type")
        if value.endswith(".*") and value[:-2] in FAMILIES:
            families.add(value[:-2])
        elif value in EVENT_TYPES:
            exact.add(value)
        else:
            raise DomainError(
                f"unknown event type {value[:80]!r}; known: {', '.join(EVENT_TYPES)} (or a family such as "
                "'operation.*')",
                code="unknown_event_type",
            )
    if len(exact) + len(families) > TYPES_MAX:
        raise DomainError(f"at most {TYPES_MAX} event types, was {len(exact) + len(families)}", code="invalid_request")
    if not exact and not families:
        return None
    return TypeFilter(frozenset(exact), frozenset(families))


def _check(event: NewEvent) -> str:
    """The event's payload as stored; a malformed event is a bug in the code that emits it."""
    if event.type not in EVENT_TYPES:
        raise InvariantBroken(f"unknown event type {event.type!r}")
    if event.client_id is not None and not 0 < len(event.client_id) <= CLIENT_ID_LENGTH_MAX:
        raise InvariantBroken(f"event client id must be 1..{CLIENT_ID_LENGTH_MAX} characters: {event.client_id!r}")
    payload = canonical(event.payload)
    if len(payload.encode()) > PAYLOAD_BYTES_MAX:
        raise InvariantBroken(f"event payload over {PAYLOAD_BYTES_MAX} bytes: {event.type} {event.subject}")
    return payload


def _mark_in_flight(conn: Connection) -> None:
    """PostgreSQL: hold, until this transaction ends, a lock whose key is at or below every id it takes next."""
    if conn.dialect.name != "postgresql":
        return
    conn.execute(
        text(
            "SELECT pg_advisory_xact_lock_shared(CAST(:base AS bigint) + "
            "COALESCE(pg_sequence_last_value(CAST(pg_get_serial_sequence('events', 'id') AS regclass)), 0))"
        ),
        {"base": IN_FLIGHT_LOCK_BASE},
    )


_INSERT_RETURNING_ID = T.insert().returning(T.c.id, sort_by_parameter_order=True)


def _rows(events: Sequence[NewEvent], now_us: int) -> list[dict[str, Any]]:
    payloads = [_check(e) for e in events]
    return [
        {
            "type": event.type,
            "occurred_at_us": now_us,
            "client_id": event.client_id,
            "subject": event.subject[:SUBJECT_LENGTH_MAX],
            "payload": payload,
        }
        for event, payload in zip(events, payloads, strict=True)
    ]


# The events `append` collects within `collecting`: the connection, the savepoint the block began in (None:
# none), the rows in order.
_collected: ContextVar[tuple[Connection, Any, list[dict[str, Any]]] | None] = ContextVar(
    "andchain_collected_events", default=None
)


@contextmanager
def collecting(conn: Connection) -> Iterator[None]:
    """Within this block, what `append` appends on `conn` is collected, and written when the block ends
    (not when it raises) in one statement, in the order appended. For a caller that appends event by event
    (a batch of final steps, a listener's range) and rolls its transaction back on any failure. An event
    appended inside a savepoint the block did not begin in is written at once, so that rolling that
    savepoint back takes it with it."""
    if _collector(conn) is not None:
        yield  # the outer block writes them
        return
    rows: list[dict[str, Any]] = []
    token = _collected.set((conn, conn.get_nested_transaction(), rows))
    try:
        yield
    finally:
        _collected.reset(token)
    _insert(conn, rows)


def _collector(conn: Connection) -> list[dict[str, Any]] | None:
    """The rows a `collecting` block gathers for `conn` at its current savepoint, if any."""
    current = _collected.get()
    if current is None or current[0] is not conn or current[1] is not conn.get_nested_transaction():
        return None
    return current[2]


def _insert(conn: Connection, rows: list[dict[str, Any]]) -> None:
    if rows:
        _mark_in_flight(conn)
        # Without RETURNING: one prepared INSERT over the rows, in half the time on SQLite.
        insert_many(conn, T, rows)


def append(conn: Connection, events: Sequence[NewEvent], now_us: int) -> None:
    """Append events in the caller's transaction (they commit or roll back with it), in one statement (or
    with the others of a `collecting` block)."""
    if not events:
        return
    rows = _rows(events, now_us)
    collected = _collector(conn)
    if collected is not None:
        collected.extend(rows)
        return
    _insert(conn, rows)


def append_with_ids(conn: Connection, events: Sequence[NewEvent], now_us: int) -> list[int]:
    """`append`, returning the events' ids in the order given (what a `collecting` block holds at the same
    savepoint goes first)."""
    if not events:
        return []
    rows = _rows(events, now_us)
    collected = _collector(conn)
    if collected is not None:
        _insert(conn, collected[:])
        collected.clear()
    _mark_in_flight(conn)
    # One statement for the whole list, its ids in the order of the rows.
    done = conn.execute(_INSERT_RETURNING_ID, rows)
    ids = [int(row[0]) for row in done]
    if len(ids) != len(rows):
        raise InvariantBroken(f"{len(rows)} events appended, {len(ids)} ids returned")
    return ids


def _event_of(row: Any) -> Event:
    m = row._mapping
    return Event(
        id=int(m["id"]),
        type=m["type"],
        occurred_at_us=int(m["occurred_at_us"]),
        client_id=m["client_id"],
        subject=m["subject"],
        payload=json.loads(m["payload"]),
    )


def horizon(conn: Connection) -> int:
    """The largest id up to which every event is settled: committed (and visible) or never to be."""
    if conn.dialect.name != "postgresql":
        return int(conn.execute(select(func.coalesce(func.max(T.c.id), 0))).scalar_one())
    # First the sequence, then the locks, then (in the caller's next statement, with a fresh
    # snapshot: READ COMMITTED) the rows. Reversing any two of these could skip an event.
    last: int = conn.execute(
        text("SELECT COALESCE(pg_sequence_last_value(CAST(pg_get_serial_sequence('events', 'id') AS regclass)), 0)")
    ).scalar_one()
    floor: int | None = conn.execute(
        text(
            "SELECT MIN(((l.classid::bigint << 32) | l.objid::bigint) - CAST(:base AS bigint)) FROM pg_locks l "
            "WHERE l.locktype = 'advisory' AND l.objsubid = 1 "
            "AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database()) "
            "AND ((l.classid::bigint << 32) | l.objid::bigint) >= CAST(:base AS bigint)"
        ),
        {"base": IN_FLIGHT_LOCK_BASE},
    ).scalar_one()
    return int(last) if floor is None else min(int(last), int(floor))


def scope_clause(client_id: str | None) -> ColumnElement[bool] | None:
    """What a reader restricted to `client_id` may see (None: the bank, everything)."""
    return None if client_id is None else T.c.client_id == client_id


class EventLog:
    """Reads of the event log, bounded and gap-safe (see the module's notes)."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine

    def read(
        self,
        *,
        after: int = 0,
        limit: int = 100,
        types: TypeFilter | None = None,
        client_id: str | None = None,
        upto: int | None = None,
    ) -> Page:
        """Events after `after`, oldest first, that a reader restricted to `client_id` may see.

        `upto` bounds the read further (a replay reads only what was fanned out).
        """
        limit = max(1, min(limit, PAGE_MAX))
        with self.engine.connect() as conn:
            settled = horizon(conn)
            if upto is not None:
                settled = min(settled, upto)
            if settled <= after:
                return Page([], after, False)
            where = [T.c.id > after, T.c.id <= settled]
            scope = scope_clause(client_id)
            if scope is not None:
                where.append(scope)
            if types is not None:
                where.append(types.clause())
            rows = conn.execute(select(T).where(and_(*where)).order_by(T.c.id).limit(limit)).all()
        events = [_event_of(r) for r in rows]
        if len(events) == limit:
            return Page(events, events[-1].id, True)
        return Page(events, settled, False)

    def head(self) -> int:
        """Where a reader that wants only what happens from now on starts."""
        with self.engine.connect() as conn:
            return horizon(conn)

    def get(self, event_id: int, *, client_id: str | None = None) -> Event | None:
        query = select(T).where(T.c.id == event_id)
        scope = scope_clause(client_id)
        if scope is not None:
            query = query.where(scope)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _event_of(row)
