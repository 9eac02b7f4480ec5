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

from sqlalchemy import delete, select, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError, OperationalError

from andchain.db import write_transaction
from andchain.errors import is_transient
from andchain.ops import leases, schema
from andchain.ops.core import Operation, Operations, OpStatus, worker_identity
from andchain.retry import Backoff

log = logging.getLogger(__name__)

LOOPS_MAX = 10_000_000_000
HEARTBEAT_EVERY_S = 2.0
# Heartbeats of workers gone this long are deleted by the next heartbeat of any worker.
WORKER_ROWS_KEEP_S = 7 * 86_400
PART_BACKOFF = Backoff(base_s=0.5, max_s=30.0)
LOOP_BACKOFF = Backoff(base_s=0.2, max_s=10.0)
# How many times an operation or a part that met a concurrent writer (a unique violation) is run
# again at once, before it counts as failing.
CONFLICT_RETRIES = 1


def database_away(exc: BaseException) -> bool:
    """A busy, locked or unreachable database: wait and try again (not a fault of any one operation)."""
    if isinstance(exc, OperationalError | InterfaceError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


def first_line(exc: BaseException, length_max: int = 300) -> str:
    """An error in one log line: SQLAlchemy's messages run on with the statement and its parameters."""
    lines = str(exc).splitlines()
    return f"{type(exc).__name__}: {lines[0][:length_max] if lines else ''}"


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

    # Optional: `status() -> dict` (into the heartbeat: a listener's lag_blocks, standby) and
    # `release()` (give back its leases when the worker stops).


@dataclass
class PartState:
    failures: int = 0
    next_run_s: float = 0.0  # on the worker's monotonic clock
    last_error: str | None = None
    last_ok_s: float | None = None  # wall clock


@dataclass
class Worker:
    ops: Operations
    handlers_in: Iterable[Handler]
    owner: str = field(default_factory=worker_identity)
    parts: list[Part] = field(default_factory=list)
    # The clock of backoffs and heartbeat spacing (seconds, monotonic); injected by tests.
    monotonic: Callable[[], float] = time.monotonic
    handlers: dict[str, Handler] = field(init=False, default_factory=dict)
    part_state: dict[str, PartState] = field(init=False, default_factory=dict)
    started_at_us: int = field(init=False, default=0)
    last_round_s: float = field(init=False, default=0.0)
    rounds: int = field(init=False, default=0)
    _beat_s: float | None = field(init=False, default=None)
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
        freed = leases.release_dead(self.ops.engine)
        if freed:
            log.warning("released named leases of dead workers count=%d", freed)
        for handler in {id(h): h for h in self.handlers.values()}.values():
            handler.recover()

    def cancel(self, op_id: str, reason: str = "cancelled by operator") -> Operation:
        op = self.ops.get(op_id)
        handler = self.handlers.get(op.kind)
        return self.ops.cancel(op_id, reason, release=handler.release if handler is not None else None)

    def _advance(self, handler: Handler, batch: list[Operation], *, conflicts_left: int = CONFLICT_RETRIES) -> None:
        """Advance a batch; whatever escapes the handler stays with the operations it concerns.

        A busy or unreachable database fails the round (the loop waits and goes on; the
        operations keep their lease). Another transient failure (a node that does not
        answer) postpones each operation with backoff and counts an attempt, so the bound
        `ops.attempts_max` holds whatever the handler does. Anything else is a bug in one
        operation's processing: the batch is retried one by one, and the operation that
        fails alone stops in needs_attention while the others go on. A unique violation
        alone is another worker that wrote the same row first (PostgreSQL, two workers):
        the operation is read again and advanced once more before it is stopped.
        """
        try:
            handler.advance(batch)
            return
        except Exception as exc:
            if database_away(exc):
                raise
            if is_transient(exc):
                log.warning("ops batch waiting kind=%s count=%d error=%s", batch[0].kind, len(batch), exc)
                for op in batch:
                    self._postpone(op, exc)
                return
            if len(batch) == 1:
                if isinstance(exc, IntegrityError) and conflicts_left > 0:
                    log.warning("operation met a concurrent writer op=%s: %s; again", batch[0].id, first_line(exc))
                    current = self.ops.get(batch[0].id)
                    if not (current.terminal or current.status == OpStatus.NEEDS_ATTENTION):
                        self._advance(handler, [current], conflicts_left=conflicts_left - 1)
                    return
                log.exception("operation failed unexpectedly op=%s", batch[0].id)
                handler.quarantine(batch[0], exc)
                return
            log.warning("ops batch failed kind=%s error=%r; retrying one by one", batch[0].kind, exc)
        for op in batch:  # isolate the operation that fails; the others go on
            current = self.ops.get(op.id)
            if current.terminal or current.status == OpStatus.NEEDS_ATTENTION:
                continue
            self._advance(handler, [current])

    def _postpone(self, op: Operation, exc: BaseException) -> None:
        postpone(self.ops, op, exc)

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
        """Run each part that is due; one that fails waits with growing backoff and the others go on."""
        for part in self.parts:
            state = self.part_state.setdefault(part.name, PartState())
            if self.monotonic() < state.next_run_s:
                continue
            was_failing = state.failures > 0
            try:
                self._run_part(part)
            except Exception as exc:
                state.failures += 1
                state.last_error = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"[:500]
                delay_s = PART_BACKOFF.delay_s(state.failures)
                state.next_run_s = self.monotonic() + delay_s
                if database_away(exc) or is_transient(exc):
                    log.warning(
                        "worker part waiting part=%s failures=%d retry_in_s=%.1f error=%s",
                        part.name,
                        state.failures,
                        delay_s,
                        first_line(exc),
                    )
                else:
                    log.error(
                        "worker part failed part=%s failures=%d retry_in_s=%.1f",
                        part.name,
                        state.failures,
                        delay_s,
                        exc_info=exc,
                    )
            else:
                state.failures = 0
                state.last_error = None
                state.last_ok_s = time.time()
                state.next_run_s = 0.0
            # A part that starts or stops failing is recorded at once; otherwise at the usual pace.
            self._beat_quietly(force=was_failing != (state.failures > 0))

    def _run_part(self, part: Part) -> None:
        for conflicts in range(CONFLICT_RETRIES + 1):
            try:
                part.run()
                return
            except IntegrityError as exc:
                if conflicts == CONFLICT_RETRIES:
                    raise
                log.warning("worker part met a concurrent writer part=%s: %s; again", part.name, first_line(exc))

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
        """What the heartbeat records: rounds, each part's health, and each listener's lag in blocks."""
        parts: dict[str, Any] = {}
        lag_blocks: dict[str, int | None] = {}
        now_s = self.monotonic()
        for part in self.parts:
            state = self.part_state.get(part.name, PartState())
            detail = part.status() if hasattr(part, "status") else {}
            parts[part.name] = {
                "ok": not state.failures,
                "failures": state.failures,
                "last_error": state.last_error,
                "retry_in_s": round(max(0.0, state.next_run_s - now_s), 3) if state.failures else None,
                **detail,
            }
            network = getattr(part, "network", None)
            if network is not None and "lag_blocks" in detail and not detail.get("standby"):
                lag_blocks[network] = detail["lag_blocks"]
        return {"rounds": self.rounds, "lag_blocks": lag_blocks, "parts": parts}

    def heartbeat(self, *, force: bool = False) -> None:
        """Record that this worker is alive, at most every HEARTBEAT_EVERY_S (ops_workers, for /health)."""
        now_s = self.monotonic()
        if not force and self._beat_s is not None and now_s - self._beat_s < HEARTBEAT_EVERY_S:
            return
        t = schema.workers
        now = self.ops.clock()
        detail = json.dumps(self.status(), default=str)
        with write_transaction(self.ops.engine) as conn:
            done = conn.execute(update(t).where(t.c.owner == self.owner).values(beat_at_us=now, detail=detail))
            if done.rowcount == 0:
                conn.execute(
                    t.insert().values(owner=self.owner, started_at_us=self.started_at_us, beat_at_us=now, detail=detail)
                )
            conn.execute(delete(t).where(t.c.beat_at_us < now - int(WORKER_ROWS_KEEP_S * 1_000_000)))
        self._beat_s = now_s

    def _beat_quietly(self, *, force: bool = False) -> None:
        """A heartbeat within a round (a listener catching up is still alive); a busy database skips it."""
        try:
            self.heartbeat(force=force)
        except Exception as exc:
            if not database_away(exc):
                raise
            log.info("heartbeat skipped: %s", first_line(exc))

    # ------------------------------------------------------------------ loop

    def stop(self) -> None:
        self._stop.set()

    def run(self, *, seconds: float, idle_sleep_s: float = 0.05, until: Callable[[], bool] | None = None) -> None:
        """Work for at most `seconds` (or until `until()` is true, or stop() is called).

        A failing round (a busy or unreachable database, a bug outside any one operation)
        is logged and the loop waits with backoff and goes on: it never ends the worker.
        """
        try:
            self._loop(seconds, idle_sleep_s, until)
        finally:
            if self.rounds:
                self._beat_quietly(force=True)  # what the worker last knew of its parts
            self.release_parts()

    def release_parts(self) -> None:
        """Give back the parts' leases (the worker stops): another worker takes over at once."""
        for part in self.parts:
            release = getattr(part, "release", None)
            if release is None:
                continue
            try:
                release()
            except Exception as exc:  # the lease then runs out by itself
                log.warning("worker part kept its lease part=%s: %s", part.name, first_line(exc))

    def _loop(self, seconds: float, idle_sleep_s: float, until: Callable[[], bool] | None) -> None:
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
                if database_away(exc) or is_transient(exc):
                    log.warning("worker round waiting %.1fs: %s", delay, first_line(exc))
                else:
                    log.exception("worker round failed; going on in %.1fs", delay)
                self._stop.wait(min(delay, max(0.0, deadline - time.monotonic())))
                continue
            if worked == 0:
                self._stop.wait(idle_sleep_s)


def postpone(ops: Operations, op: Operation, exc: BaseException) -> None:
    """A transient failure of one operation: retry it later with backoff, within the attempt budget
    (`ops.attempts_max`), then stop it where an operator sees it."""
    current = ops.get(op.id)
    if current.terminal or current.status == OpStatus.NEEDS_ATTENTION:
        return
    code = str(getattr(exc, "code", type(exc).__name__))
    message = str(getattr(exc, "message", exc))
    if current.attempts + 1 >= ops.settings.attempts_max:
        ops.attention(current, code, f"retry budget spent ({current.attempts + 1} attempts): {message}")
        return
    ops.update_if_current(
        current,
        retry_in_us=ops.backoff_us(current.attempts + 1),
        count_attempt=True,
        error=(code, message),
    )


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
    """Run a worker until `stop` is set; should its loop ever die (or building it fail), build a new
    one and go on, after a backoff that grows with each restart."""
    for restart in range(restarts_max):
        if stop.is_set():
            return
        try:
            worker = make()
            worker._stop = stop
            worker.run(seconds=float("inf"))
            if stop.is_set():
                return
            log.error("worker loop ended without being stopped; restarting (restart %d)", restart + 1)
        except Exception:
            log.exception("worker loop died; restarting (restart %d)", restart + 1)
        stop.wait(LOOP_BACKOFF.delay_s(restart + 1))
    log.error("worker not restarted: %d restarts already", restarts_max)
