"""The audit log: every operator and compliance action, append-only and hash-chained.

Each entry's hash is SHA-256 over the previous entry's hash and the entry's own canonical content
(sequence number, time, actor, action, subject, details). Editing an entry changes its hash; removing
one breaks the sequence and the link of the next; both are found by `verify`. The database refuses
UPDATE and DELETE on the table (triggers, migration 0017), so a change needs a deliberate act first.
Removing the newest entries leaves a shorter, valid chain: an operator who keeps the head printed
by `andchain audit verify` (sequence and hash) elsewhere detects that with `--expect-head`.

Entries are written in the caller's transaction: an action and its entry commit together or not at
all. Appends are serialised (a transaction-scoped advisory lock on PostgreSQL; SQLite writes one at
a time), so the chain never forks.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, Engine, func, select, text

from andchain.compliance.schema import audit_log
from andchain.db import write_transaction
from andchain.ledger.model import Clock

GENESIS = "0" * 64
_LOCK_KEY = int.from_bytes(hashlib.sha256(b"andchain-audit-log").digest()[:8], "big", signed=True)
VERIFY_BATCH = 1000
ACTOR_MAX = 200


@dataclass(frozen=True)
class AuditEntry:
    seq: int
    at_us: int
    actor: str
    action: str
    subject: str
    details: dict[str, Any]
    prev_hash: str
    hash: str


@dataclass(frozen=True)
class AuditReport:
    entries: int
    head_seq: int
    head_hash: str
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems


def canonical(details: dict[str, Any]) -> str:
    return json.dumps(details, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)


def entry_hash(prev_hash: str, seq: int, at_us: int, actor: str, action: str, subject: str, details: str) -> str:
    content = json.dumps([seq, at_us, actor, action, subject, details], separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256((prev_hash + content).encode()).hexdigest()


def append(
    conn: Connection, clock: Clock, actor: str, action: str, subject: str, details: dict[str, Any] | None = None
) -> AuditEntry:
    """Append one entry in the caller's transaction."""
    if not actor or not action:
        raise ValueError(f"an audit entry needs an actor and an action, was {actor!r} {action!r}")
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    last = conn.execute(select(audit_log.c.seq, audit_log.c.hash).order_by(audit_log.c.seq.desc()).limit(1)).first()
    seq = 1 if last is None else int(last.seq) + 1
    prev = GENESIS if last is None else str(last.hash)
    at_us = clock()
    body = canonical(details or {})
    actor = actor[:ACTOR_MAX]
    digest = entry_hash(prev, seq, at_us, actor, action, subject, body)
    conn.execute(
        audit_log.insert().values(
            seq=seq, at_us=at_us, actor=actor, action=action, subject=subject, details=body, prev_hash=prev, hash=digest
        )
    )
    return AuditEntry(seq, at_us, actor, action, subject, details or {}, prev, digest)


def record(
    engine: Engine, clock: Clock, actor: str, action: str, subject: str, details: dict[str, Any] | None = None
) -> AuditEntry:
    """Append one entry in a transaction of its own."""
    with write_transaction(engine) as conn:
        return append(conn, clock, actor, action, subject, details)


def _rows(engine: Engine) -> Iterator[Any]:
    after = 0
    while True:
        with engine.connect() as conn:
            rows = conn.execute(
                select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(VERIFY_BATCH)
            ).all()
        if not rows:
            return
        yield from rows
        after = int(rows[-1].seq)


def verify(engine: Engine, *, expect_head: tuple[int, str] | None = None) -> AuditReport:
    """Walk the whole chain and report every entry that was edited, removed or inserted out of place."""
    problems: list[str] = []
    prev_hash, expected_seq, count = GENESIS, 1, 0
    head_seq, head_hash = 0, GENESIS
    for row in _rows(engine):
        count += 1
        seq = int(row.seq)
        if seq != expected_seq:
            problems.append(f"entry {expected_seq} is missing (the next entry is {seq})")
        if row.prev_hash != prev_hash:
            problems.append(f"entry {seq} does not link to the entry before it")
        recomputed = entry_hash(row.prev_hash, seq, int(row.at_us), row.actor, row.action, row.subject, row.details)
        if recomputed != row.hash:
            problems.append(f"entry {seq} was changed (its content no longer gives its hash)")
        prev_hash, expected_seq = str(row.hash), seq + 1
        head_seq, head_hash = seq, str(row.hash)
        if len(problems) >= 100:
            problems.append("stopped after 100 problems")
            break
    if expect_head is not None:
        want_seq, want_hash = expect_head
        if head_seq < want_seq:
            problems.append(
                f"the log ends at entry {head_seq}, the head kept was entry {want_seq}: entries were removed"
            )
        else:
            with engine.connect() as conn:
                kept = conn.execute(select(audit_log.c.hash).where(audit_log.c.seq == want_seq)).scalar()
            if kept != want_hash:
                problems.append(f"entry {want_seq} is not the one kept as the head ({want_hash[:16]}...)")
    return AuditReport(count, head_seq, head_hash, tuple(problems))


def entries(engine: Engine, *, after: int = 0, limit: int = 100, subject: str | None = None) -> list[AuditEntry]:
    query = select(audit_log).where(audit_log.c.seq > after).order_by(audit_log.c.seq).limit(max(1, min(limit, 1000)))
    if subject is not None:
        query = query.where(audit_log.c.subject == subject)
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    return [
        AuditEntry(int(r.seq), int(r.at_us), r.actor, r.action, r.subject, json.loads(r.details), r.prev_hash, r.hash)
        for r in rows
    ]


def count(engine: Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(audit_log)).scalar_one())
