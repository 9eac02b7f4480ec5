"""The worker: claims due operations and hands them, in batches, to the handler of their kind."""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Iterable
from typing import Protocol

from andchain.chains.rpc import NodeUnreachable
from andchain.errors import DomainError
from andchain.ops.core import Operation, Operations, backoff_us, worker_identity

log = logging.getLogger(__name__)

LOOPS_MAX = 10_000_000


class Handler(Protocol):
    kinds: tuple[str, ...]

    def advance(self, ops: list[Operation]) -> None:
        """Move each operation on by at most one step, persisting every change through Operations."""

    def recover(self) -> None:
        """After a crash: re-send what was signed but maybe not sent, repair what a crash left."""

    def cancelled(self, op: Operation) -> None:
        """Release whatever the operation reserved (it was never sent)."""


class Worker:
    def __init__(
        self,
        ops: Operations,
        handlers: Iterable[Handler],
        *,
        owner: str | None = None,
        tick: Callable[[], object] | None = None,
    ) -> None:
        self.ops = ops
        self.handlers: dict[str, Handler] = {}
        for handler in handlers:
            for kind in handler.kinds:
                self.handlers[kind] = handler
        self.owner = owner or worker_identity()
        self.tick = tick  # periodic extra work, e.g. the listener and the rules engine

    def recover(self) -> None:
        freed = self.ops.release_dead_leases()
        if freed:
            log.warning("released leases of dead workers count=%d", freed)
        for handler in {id(h): h for h in self.handlers.values()}.values():
            handler.recover()

    def cancel(self, op_id: str, reason: str = "cancelled by operator") -> Operation:
        op = self.ops.cancel(op_id, reason)
        handler = self.handlers.get(op.kind)
        if handler is not None:
            handler.cancelled(op)
        return op

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
                try:
                    handler.advance(batch)
                except (NodeUnreachable, DomainError) as exc:
                    # The whole batch waits: nothing of it was half-done beyond what each op recorded.
                    log.warning("ops batch postponed kind=%s error=%s", batch[0].kind, exc)
                    for op in batch:
                        current = self.ops.get(op.id)
                        if not current.terminal:
                            self.ops.update(
                                current,
                                retry_in_us=backoff_us(current.attempts + 1),
                                count_attempt=True,
                                error=(getattr(exc, "code", "error"), str(exc)),
                            )
        if self.tick is not None:
            self.tick()
        return len(claimed)

    def run(self, *, seconds: float, idle_sleep_s: float = 0.05, until: Callable[[], bool] | None = None) -> None:
        """Work for at most `seconds` (or until `until()` is true)."""
        self.recover()
        deadline = time.monotonic() + seconds
        for _ in range(LOOPS_MAX):
            if time.monotonic() >= deadline or (until is not None and until()):
                return
            if self.run_once() == 0:
                time.sleep(idle_sleep_s)
