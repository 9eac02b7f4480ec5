"""The worker: claims due operations, hands them in batches to their handler, and supervises the
periodic parts beside them (listeners, the rules engine, nonce and finality care).

Nothing one part does can stop the others: an operation whose processing hits a bug
is put in needs_attention and the rest of its batch goes on; a part that fails is
logged, retried with backoff and reported (heartbeat, /health, reconcile); a busy or
unreachable database makes the whole loop wait and go on. Every wait is bounded.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from sqlalchemy import select, update
from sqlalchemy.exc import DBAPIError

from andchain.db import write_transaction
from andchain.errors import is_transient
from andchain.ops import schema
from andchain.ops.core import Operation, Operations, worker_identity
from andchain.retry import Backoff

log = logging.getLogger(__name__)

LOOPS_MAX = 10_000_000_000
HEARTBEAT_EVERY_S = 2.0
PART_BACKOFF = Backoff(base_s=0.5, max_s=30.0)
LOOP_BACKOFF = Backoff(base_s=0.2, max_s=10.0)


class Handler(Protocol):
    kinds: tuple[str, ...]

    def advance(self, ops: list[Operation]) -> None:
        """Move each operation on by at most one step, persisting every change through Operations."""

    def recover(self) -> None:
        """After a restart: whatever must happen before the first round."""

    def release(self, op: Any, conn: Any) -> None:
        """Release whatever a cancelled operation reserved, in the cancelling transaction."""

    def quarantine(self, op: Operation, exc: BaseException) -> None:
        """Stop one operation whose processing failed unexpectedly, where an operator sees it."""


class Part(Protocol):
    """Periodic work beside the operations (a listener, the rules engine, maintenance)."""

    name: str

    def run(self) -> None: ...

    def idle(self) -> bool:
        """Whether the part has caught up (a listener at the final head, no rule due)."""


@dataclass
class PartState:
    failures: int = 0
    next_run_s: float = 0.0
    last_error: str | None = None
    last_ok_s: float | None = None


@dataclass
class Worker:
    ops: Operations
    handlers_in: Iterable[Handler]
    owner: str = field(default_factory=worker_identity)
    parts: list[Part] = field(default_factory=list)
    handlers: dict[str, Handler] = field(init=False, default_factory=dict)
    part_state: dict[str, PartState] = field(init=False, default_factory=dict)
    started_at_us: int = field(init=False, default=0)
    last_round_s: float = field(init=False, default=0.0)
    rounds: int = field(init=False, default=0)
    _beat_s: float = field(init=False, default=0.0)
    _stop: threading.Event = field(init=False, default_factory=threading.Event)

    def __post_init__(self) -> None:
        for handler in self.handlers_in:
            for kind in handler.kinds:
                self.handlers[kind] = handler
        self.started_at_us = self.ops.clock()

    # ------------------------------------------------------------ operations

    def recover(self) -> None:
        freed = self.ops.release_dead_leases()
        if freed:
            log.warning("released leases of dead workers count=%d", freed)
        for handler in {id(h): h for h in self.handlers.values()}.values():
            handler.recover()

    def cancel(self, op_id: str, reason: str = "cancelled by operator") -> Operation:
        op = self.ops.get(op_id)
        handler = self.handlers.get(op.kind)
        return self.ops.cancel(op_id, reason, release=handler.release if handler is not None else None)

    def _advance(self, handler: Handler, batch: list[Operation]) -> None:
        try:
            handler.advance(batch)
            return
        except Exception as exc:
            if is_transient(exc):
                # The database or a node is away: the operations keep their lease and come back.
                log.warning("ops batch waiting kind=%s error=%s", batch[0].kind, exc)
                return
            if len(batch) == 1:
                log.exception("operation failed unexpectedly op=%s", batch[0].id)
                handler.quarantine(batch[0], exc)
                return
            log.warning("ops batch failed kind=%s error=%r; retrying one by one", batch[0].kind, exc)
        for op in batch:  # isolate the operation that fails; the others go on
            current = self.ops.get(op.id)
            if current.terminal or current.status.value == "needs_attention":
                continue
            self._advance(handler, [current])

    def run_once(self) -> int:
        claimed = self.ops.claim(self.owner, kinds=list(self.handlers))
        by_handler: dict[int, tuple[Handler, list[Operation]]] = {}
        for op in claimed:
            handler = self.handlers[op.kind]
            by_handler.setdefault(id(handler), (handler, []))[1].append(op)
        for handler, ops in by_handler.values():
            groups: dict[tuple[str, str | None], list[Operation]] = defaultdict(list)
            for op in ops:
                groups[(op.kind, op.network)].append(op)
            for batch in groups.values():
                self._advance(handler, batch)
        self.run_parts()
        self.last_round_s = time.time()
        self.rounds += 1
        self.heartbeat()
        return len(claimed)

    # ----------------------------------------------------------------- parts

    def run_parts(self) -> None:
        now = time.monotonic()
        for part in self.parts:
            state = self.part_state.setdefault(part.name, PartState())
            if now < state.next_run_s:
                continue
            try:
                part.run()
            except Exception as exc:
                state.failures += 1
                state.last_error = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
                state.next_run_s = now + PART_BACKOFF.delay_s(state.failures)
                level = logging.WARNING if is_transient(exc) else logging.ERROR
                log.log(level, "worker part failed part=%s failures=%d error=%s", part.name, state.failures, exc)
                continue
            state.failures = 0
            state.last_error = None
            state.last_ok_s = time.time()
            state.next_run_s = 0.0

    def parts_idle(self) -> bool:
        """Every part caught up, or failing (and reported): nothing more will come of waiting."""
        for part in self.parts:
            state = self.part_state.get(part.name)
            if state is not None and state.failures:
                continue
            if not part.idle():
                return False
        return True

    def failing_parts(self) -> dict[str, str]:
        return {name: s.last_error or "" for name, s in self.part_state.items() if s.failures}

    # ------------------------------------------------------------- heartbeat

    def status(self) -> dict[str, Any]:
        return {
            "parts": {
                part.name: {
                    "ok": not self.part_state.get(part.name, PartState()).failures,
                    "last_error": self.part_state.get(part.name, PartState()).last_error,
                    **(part.status() if hasattr(part, "status") else {}),
                }
                for part in self.parts
            }
        }

    def heartbeat(self, *, force: bool = False) -> None:
        now_s = time.monotonic()
        if not force and now_s - self._beat_s < HEARTBEAT_EVERY_S:
            return
        self._beat_s = now_s
        t = schema.workers
        now = self.ops.clock()
        detail = json.dumps(self.status(), default=str)
        with write_transaction(self.ops.engine) as conn:
            done = conn.execute(update(t).where(t.c.owner == self.owner).values(beat_at_us=now, detail=detail))
            if done.rowcount == 0:
                conn.execute(
                    t.insert().values(owner=self.owner, started_at_us=self.started_at_us, beat_at_us=now, detail=detail)
                )

    # ------------------------------------------------------------------ loop

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, seconds: float, idle_sleep_s: float = 0.05, until: Callable[[], bool] | None = None) -> None:
        """Work for at most `seconds` (or until `until()` is true, or stop() is called).

        A failing round (a busy or unreachable database, a bug outside any one operation)
        is logged and the loop waits with backoff and goes on: it never ends the worker.
        """
        deadline = time.monotonic() + seconds
        failures = 0
        recovered = False
        for _ in range(LOOPS_MAX):
            if self._stop.is_set() or time.monotonic() >= deadline:
                return
            try:
                if not recovered:
                    self.recover()
                    recovered = True
                if until is not None and until():
                    return
                worked = self.run_once()
                failures = 0
            except Exception as exc:
                failures += 1
                delay = LOOP_BACKOFF.delay_s(failures)
                if isinstance(exc, DBAPIError) or is_transient(exc):
                    log.warning("worker round waiting %.1fs: %s", delay, str(exc).splitlines()[0][:300])
                else:
                    log.exception("worker round failed; going on in %.1fs", delay)
                self._stop.wait(min(delay, max(0.0, deadline - time.monotonic())))
                continue
            if worked == 0:
                self._stop.wait(idle_sleep_s)


def worker_status(ops: Operations, stale_after_s: float) -> list[dict[str, Any]]:
    """Every worker's last heartbeat, for /health: alive when its last round is recent."""
    t = schema.workers
    now = ops.clock()
    with ops.engine.connect() as conn:
        rows = conn.execute(select(t).order_by(t.c.beat_at_us.desc()).limit(50)).all()
    out = []
    for row in rows:
        age_s = (now - int(row.beat_at_us)) / 1_000_000
        out.append(
            {
                "owner": row.owner,
                "alive": age_s <= stale_after_s,
                "last_beat_s_ago": round(age_s, 3),
                **json.loads(row.detail or "{}"),
            }
        )
    return out


def supervise(make: Callable[[], Worker], stop: threading.Event, *, restarts_max: int = 1_000_000) -> None:
    """Run a worker until `stop` is set; if its loop ever dies, build a new one and go on (with backoff)."""
    for restart in range(restarts_max):
        if stop.is_set():
            return
        try:
            worker = make()
            worker._stop = stop
            worker.run(seconds=float("inf"))
            if stop.is_set():
                return
        except BaseException:
            log.exception("worker loop died; restarting (restart %d)", restart + 1)
        stop.wait(LOOP_BACKOFF.delay_s(restart + 1))
