"""Each request's id, its access log line and its metrics; the /metrics route.

Every request gets a request id: the caller's `X-Request-Id` when it is a usable one (1 to
128 of `A-Z a-z 0-9 . _ : -`), else a new one. It is echoed in the response's
`X-Request-Id`, bound to every log line written while the request is served, and stored
in the state of each operation the request creates (`state["request_id"]`, see
andchain.logs.with_request_id), so that an operator can go from a client's complaint to
the log lines and the operations of one request.

The access log line holds the method, the route, the path (never the query), the
status, the duration, the caller's address and its API key's id: never a header (the
Authorization credential), never the body.

Requests are counted by route template (`/v1/accounts/{ref}`, never the path itself, so
that the labels stay few whatever callers send) and status, with a latency histogram.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from andchain.logs import request_id

HEADER = "X-Request-Id"
_VALID_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")
_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
UNMATCHED = "unmatched"
# Paths in the access log are cut here: a path can be as long as the header limit allows.
_PATH_LOGGED_MAX = 200
METRICS_CONTENT_TYPE = CONTENT_TYPE_LATEST

access_log = logging.getLogger("andchain.api.access")


def incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope.get("headers", ()):
        if name == b"x-request-id":
            text = value.decode("latin-1")
            return text if _VALID_ID.fullmatch(text) else None
    return None


def new_request_id() -> str:
    return uuid.uuid4().hex


def route_template(scope: Scope) -> str:
    """The template of the route that served the request, or "unmatched" (a 404)."""
    route = scope.get("route")
    path = getattr(route, "path_format", None) or getattr(route, "path", None)
    if isinstance(path, str) and path:
        return path
    endpoint = scope.get("endpoint")
    if endpoint is None:
        return UNMATCHED
    # A mounted application (the documentation's files) leaves its prefix in root_path.
    mount = scope.get("root_path", "")[len(scope.get("app_root_path", "")) :]
    if mount:
        return f"{mount}/{{path}}"
    # FastAPI names the route in the scope for its own routes only; /openapi.json is Starlette's.
    for candidate in getattr(getattr(scope.get("app"), "router", None), "routes", ()):
        if getattr(candidate, "endpoint", None) is endpoint and isinstance(getattr(candidate, "path", None), str):
            return str(candidate.path)
    return UNMATCHED


def key_id_of(scope: Scope) -> Any:
    principal = (scope.get("state") or {}).get("principal")
    return getattr(principal, "key_id", None)


class HttpMetrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "andchain_http_requests",
            "HTTP requests by method, route template and status",
            ["method", "route", "status"],
            registry=registry,
        )
        self.duration = Histogram(
            "andchain_http_request_duration_seconds",
            "Time from a request's arrival to the end of its response, by method and route template",
            ["method", "route"],
            registry=registry,
        )

    def observe(self, method: str, route: str, status: int, duration_s: float) -> None:
        method = method if method in _METHODS else "OTHER"
        self.requests.labels(method, route, str(status)).inc()
        self.duration.labels(method, route).observe(duration_s)

    def exposition(self) -> bytes:
        return generate_latest(self.registry)


class RequestContextMiddleware:
    """The outermost layer: it sees every answer, a 500 and a refused Host included."""

    def __init__(self, app: ASGIApp, metrics: HttpMetrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = incoming_request_id(scope) or new_request_id()
        token = request_id.set(rid)
        started_s = time.perf_counter()
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
                MutableHeaders(scope=message)[HEADER] = rid
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            duration_s = time.perf_counter() - started_s
            route = route_template(scope)
            method = scope.get("method", "")
            self.metrics.observe(method, route, status, duration_s)
            client = scope.get("client")
            access_log.info(
                "%s %s %d",
                method,
                route,
                status,
                extra={
                    "method": method,
                    "route": route,
                    "path": scope.get("path", "")[:_PATH_LOGGED_MAX],
                    "status": status,
                    "duration_ms": round(duration_s * 1000, 3),
                    "client": client[0] if client else None,
                    "key_id": key_id_of(scope),
                },
            )
            request_id.reset(token)
