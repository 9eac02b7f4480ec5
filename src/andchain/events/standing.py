"""Standing findings (reconcile breaks, alerts): emitted when they appear or change, and when they end.

Reconcile reports every break on every run. A break that stands for a week must not
become an event per run, so what was last emitted is remembered (`events_standing`):
a finding is emitted when it is new, or when what it says changed (another amount); one
that is no longer reported is emitted as resolved (`reconcile.resolved`, `alert.cleared`)
and forgotten, so that it is emitted again should it come back. A network that could not
be read in a run keeps its findings: not seeing them is not seeing them resolved.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Connection, delete, select, update

from andchain.events import schema
from andchain.events.store import NewEvent, append, append_with_ids, iso

S = schema.standing

ENDED = {"reconcile.break": "reconcile.resolved", "alert": "alert.cleared"}


@dataclass(frozen=True)
class Finding:
    kind: str  # reconcile.break | alert
    identity: str  # the same finding on every run (a check and its subject; an alert without its figures)
    content: str  # what it says: a change of it is emitted again
    subject: str
    payload: dict[str, Any] = field(default_factory=dict)
    scope: str = ""  # the network it concerns, if any

    @property
    def key(self) -> str:
        return hashlib.sha256(f"{self.kind}\x00{self.identity}".encode()).hexdigest()

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.content.encode()).hexdigest()


def sync(conn: Connection, findings: Sequence[Finding], now_us: int, *, unread: Collection[str] = ()) -> int:
    """Emit what is new, changed or gone since the last run, in the caller's transaction; how many events.

    `unread`: scopes (networks) this run could not check, whose findings stand as they were.
    """
    for kind in {f.kind for f in findings}:
        if kind not in ENDED:
            raise ValueError(f"a standing finding is one of {', '.join(ENDED)}, was {kind!r}")
    current = {f.key: f for f in findings}
    marks = {r.key: r for r in conn.execute(select(S))}
    emitted = 0
    for key in sorted(current):
        finding = current[key]
        mark = marks.get(key)
        if mark is not None and mark.digest == finding.digest:
            continue
        (event_id,) = append_with_ids(conn, [NewEvent(finding.kind, finding.subject, finding.payload)], now_us)
        emitted += 1
        if mark is None:
            conn.execute(
                S.insert().values(
                    key=key,
                    kind=finding.kind,
                    scope=finding.scope,
                    subject=finding.subject[:300],
                    digest=finding.digest,
                    event_id=event_id,
                    since_us=now_us,
                )
            )
        else:
            conn.execute(update(S).where(S.c.key == key).values(digest=finding.digest, event_id=event_id))
    for key in sorted(set(marks) - set(current)):
        mark = marks[key]
        if mark.scope and mark.scope in unread:
            continue
        payload = {"subject": mark.subject, "since": iso(int(mark.since_us)), "event_id": int(mark.event_id)}
        append(conn, [NewEvent(ENDED[mark.kind], mark.subject, payload)], now_us)
        emitted += 1
        conn.execute(delete(S).where(S.c.key == key))
    return emitted
