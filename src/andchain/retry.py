"""One way to wait and try again: exponential backoff with a cap, and a bounded retry loop.

Every wait in andchain that repeats (a node that does not answer, an operation whose
step failed for a transient reason, a listener or a worker part that errs, a busy
database) takes its delays from a `Backoff`, so each has an explicit bound.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Delays base_s, 2*base_s, 4*base_s ... capped at max_s; jitter spreads them by up to that fraction."""

    base_s: float = 0.1
    max_s: float = 2.0
    jitter: float = 0.0

    def delay_s(self, attempt: int) -> float:
        """The wait before attempt number `attempt` (1 = the first retry)."""
        delay = min(self.max_s, self.base_s * 2 ** max(0, attempt - 1))
        if self.jitter:
            delay *= 1 + random.uniform(-self.jitter, self.jitter)
        return float(max(0.0, delay))

    def delay_us(self, attempt: int) -> int:
        return int(self.delay_s(attempt) * 1_000_000)


def retrying(
    fn: Callable[[], T],
    *,
    attempts_max: int,
    retry_on: Callable[[BaseException], bool],
    backoff: Backoff = Backoff(),
    sleep: Callable[[float], None] = time.sleep,
    on_retry: Callable[[int, BaseException], None] | None = None,
) -> T:
    """Call `fn` until it succeeds or `attempts_max` calls failed; re-raise the last error.

    Only errors for which `retry_on` is true are retried; any other propagates at once.
    """
    if attempts_max < 1:
        raise ValueError(f"attempts_max must be at least 1, was {attempts_max}")
    for attempt in range(1, attempts_max + 1):
        try:
            return fn()
        except Exception as exc:
            if attempt == attempts_max or not retry_on(exc):
                raise
            if on_retry is not None:
                on_retry(attempt, exc)
            sleep(backoff.delay_s(attempt))
    raise AssertionError("unreachable")  # pragma: no cover
