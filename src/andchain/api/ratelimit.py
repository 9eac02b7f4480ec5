"""Rate limits per caller: reads and writes counted apart, refused with 429 and Retry-After.

The caller is its API key when the request carries one that authentication resolved
(`request.state.principal.key_id`), else its address (behind a proxy, the address
uvicorn takes from X-Forwarded-For when the proxy is in FORWARDED_ALLOW_IPS).

The check runs inside the route, after every dependency and just before the route's
own code: authentication may be a dependency of the router or of the route, and the
principal is known only once it has run. A refused request therefore has done nothing
yet (no Idempotency-Key was stored: the same request may be sent again after
Retry-After). Counting uses the `limits` package, in this process's memory by default;
several API processes need a storage they share (api.rate_limit_storage_uri).
"""

from __future__ import annotations

import functools
import inspect
import logging
import math
import time
from collections.abc import Callable
from contextvars import ContextVar
from typing import Any

from limits import RateLimitItem, parse_many
from limits.storage import storage_from_string
from limits.strategies import STRATEGIES, RateLimiter
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request

from andchain.api.problems import ApiProblem
from andchain.config import ApiSettings

log = logging.getLogger(__name__)

READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
# The request whose route is running, set by StrictJSONRoute for the route's code to be checked.
current_request: ContextVar[Request | None] = ContextVar("andchain_current_request", default=None)
_EXEMPT = "__andchain_rate_limit_exempt__"
_WRAPPED = "__andchain_rate_limited__"


class RateLimited(ApiProblem):
    def __init__(self, kind: str, limit: RateLimitItem, retry_after_s: int) -> None:
        super().__init__(429, "rate_limited", f"this caller's {kind} are over {limit}; retry after {retry_after_s} s")
        self.headers = {"Retry-After": str(retry_after_s)}


def caller(request: Request) -> str:
    """Whom a request is counted against: its API key's id when authenticated, else its address."""
    principal = getattr(request.state, "principal", None)
    key_id = getattr(principal, "key_id", None)
    if key_id is not None:
        return f"key:{key_id}"
    client = request.client
    return f"addr:{client.host if client else 'unknown'}"


class Limiter:
    def __init__(self, settings: ApiSettings, *, key: Callable[[Request], str] = caller) -> None:
        self.reads = parse_many(settings.rate_limit_reads)
        self.writes = parse_many(settings.rate_limit_writes)
        self.storage = storage_from_string(settings.rate_limit_storage_uri)
        strategy: RateLimiter = STRATEGIES[settings.rate_limit_strategy](self.storage)
        self.strategy = strategy
        self.key = key

    def check(self, request: Request) -> None:
        """Count the request; raise RateLimited when one of its limits is spent.

        A storage that does not answer lets the request through, logged: the limits protect
        the service, and refusing every request while a shared store is down would stop it."""
        kind = "reads" if request.method in READ_METHODS else "writes"
        who = self.key(request)
        for limit in self.reads if kind == "reads" else self.writes:
            try:
                allowed = self.strategy.hit(limit, kind, who)
                reset_at = None if allowed else self.strategy.get_window_stats(limit, kind, who).reset_time
            except Exception:
                log.exception("rate limit storage failed; request let through", extra={"limit": str(limit)})
                return
            if not allowed:
                assert reset_at is not None
                retry_after_s = max(1, math.ceil(reset_at - time.time()))
                raise RateLimited(kind, limit, retry_after_s)


def exempt(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """Mark a route's function as not rate limited (/metrics, the documentation)."""
    setattr(endpoint, _EXEMPT, True)
    return endpoint


def _check_current() -> None:
    request = current_request.get()
    if request is None:
        return
    limiter: Limiter | None = getattr(request.app.state, "rate_limiter", None)
    if limiter is not None:
        limiter.check(request)


def limited(endpoint: Callable[..., Any]) -> Callable[..., Any]:
    """The route function, checking the rate limit of the current request before it runs.

    functools.wraps keeps the signature (FastAPI reads the parameters through __wrapped__),
    and the wrapper is of the same kind as the function: a plain function still runs in the
    thread pool, a coroutine function on the event loop (its check in the thread pool, as a
    shared storage is reached over the network). FastAPI tells a streaming route by the
    function it unwraps, so a generator stays one to it."""
    if getattr(endpoint, _EXEMPT, False) or getattr(endpoint, _WRAPPED, False):
        return endpoint
    wrapper: Callable[..., Any]
    if inspect.iscoroutinefunction(endpoint):

        @functools.wraps(endpoint)
        async def wrapper(*args: Any, **kwargs: Any) -> Any:
            await run_in_threadpool(_check_current)
            return await endpoint(*args, **kwargs)

    else:
        # A plain function, or one that streams (a generator, sync or async): FastAPI calls a
        # streaming route's function on the event loop and iterates it once the response has
        # started, so its check is made here, when it is called, while a 429 can still be sent.
        @functools.wraps(endpoint)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            _check_current()
            return endpoint(*args, **kwargs)

    setattr(wrapper, _WRAPPED, True)
    return wrapper
