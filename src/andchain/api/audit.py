"""Every write the bank's people make through the API (operator, compliance, desk, admin keys) goes into
the audit log: who (the API key and its role), what (the method and the route), on what (the path),
and how it ended (the status, the Idempotency-Key). Clients' own requests are not operator actions and
are not logged here; the compliance actions themselves also log their details in their own transaction.
"""

from __future__ import annotations

import logging
from typing import Any

import anyio
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from andchain.compliance import audit

log = logging.getLogger(__name__)

WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class AuditMiddleware:
    def __init__(self, app: ASGIApp, *, engine: Any, clock: Any) -> None:
        self.app = app
        self.engine = engine
        self.clock = clock

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope.get("method") not in WRITE_METHODS:
            await self.app(scope, receive, send)
            return
        status: dict[str, int] = {}

        async def sent(message: Message) -> None:
            if message["type"] == "http.response.start":
                status["code"] = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, sent)
        finally:
            principal = (scope.get("state") or {}).get("principal")
            role = getattr(getattr(principal, "role", None), "value", None)
            if principal is not None and role != "client":
                route = getattr(scope.get("route"), "path", None) or scope.get("path", "")
                headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", [])}
                details = {
                    "role": role,
                    "status": status.get("code", 500),
                    "idempotency_key": headers.get("idempotency-key"),
                }
                try:
                    await anyio.to_thread.run_sync(
                        audit.record,
                        self.engine,
                        self.clock,
                        f"api:{principal.key_id}",
                        f"api {scope['method']} {route}"[:80],
                        str(scope.get("path", ""))[:2000],
                        details,
                    )
                except Exception:  # the answer is sent; a log entry that could not be written is said loudly
                    log.exception("audit entry not written for %s %s", scope["method"], scope.get("path"))
