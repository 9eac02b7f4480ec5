"""The reference custodian over HTTP, its worker, and its signed webhooks.

Routes (all but /health need `Authorization: Bearer <the custodian's API key>`):
  POST /v1/accounts                      {name, owner}, Idempotency-Key      -> 201 account
  GET  /v1/accounts/{id}
  POST /v1/accounts/{id}/addresses       {asset, network}                    -> the deposit address
  GET  /v1/accounts/{id}/balances
  POST /v1/transfers                     {source_account, destination: {address}|{account}, asset,
                                          network, amount, note?, travel_rule?}, Idempotency-Key
                                                                             -> 201 (200 for a replay)
  GET  /v1/transfers/{id}
  GET  /v1/transfers?idempotency_key=K   -> {"transfers": [the one]} or []
  GET  /v1/transfers?after=SEQ&limit=N   -> {"transfers": [...], "cursor": SEQ}
  POST /v1/transfers/{id}/cancel
Approvals are not an API call: the custodian's own operator decides (`andchain custodian
approve|reject`), never the client whose withdrawal waits.

Webhooks: each state change is POSTed to the configured URL with `X-Custodian-Timestamp` (unix
seconds) and `X-Custodian-Signature: v1=<hex HMAC-SHA256 of "<timestamp>.<body>" with the
webhook secret>`, retried with exponential backoff (1 s doubling, at most 5 min apart) until
answered 2xx or `webhook_attempts_max` attempts.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import httpx
from fastapi import Depends, FastAPI, Header, Query, Request
from fastapi.responses import JSONResponse
from sqlalchemy import func, select, update

from andchain.custody.kept import schema as store
from andchain.custody.kept.service import KeptCustody
from andchain.db import write_transaction
from andchain.errors import DomainError
from andchain.tls import tls_context

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Custodian-Signature"
TIMESTAMP_HEADER = "X-Custodian-Timestamp"
DELIVERY_BATCH_MAX = 50
BACKOFF_MAX_S = 300


class Unauthorized(DomainError):
    code = "unauthorized"
    http_status = 401


def webhook_signature(secret: str, timestamp: str, body: bytes) -> str:
    mac = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"v1={mac}"


class Worker:
    """Advances transfers in one thread and delivers webhooks in another, in the serving process:
    an endpoint that does not answer never holds a transfer back."""

    def __init__(
        self,
        custodian: KeptCustody,
        *,
        webhook_secret: str,
        poll_s: float,
        attempts_max: int,
        timeout_s: float = 5.0,
        clock_s: Callable[[], float] = time.time,
    ) -> None:
        self.custodian = custodian
        self.secret = webhook_secret
        self.poll_s = poll_s
        self.attempts_max = attempts_max
        self.clock_s = clock_s
        self.http = httpx.Client(timeout=timeout_s, verify=tls_context())
        self._stop = threading.Event()
        self.threads = [
            threading.Thread(
                target=self._loop, args=(self.custodian.process,), name="custodian-transfers", daemon=True
            ),
            threading.Thread(target=self._loop, args=(self.deliver,), name="custodian-webhooks", daemon=True),
        ]

    def start(self) -> None:
        for thread in self.threads:
            thread.start()

    def stop(self) -> None:
        self._stop.set()
        for thread in self.threads:
            thread.join(timeout=30)
        self.http.close()

    def _loop(self, step: Callable[[], int]) -> None:
        while not self._stop.is_set():
            try:
                busy = step()
            except Exception:
                log.exception("custodian worker round failed; trying again")
                busy = 0
            self._stop.wait(0 if busy else self.poll_s)

    def deliver(self) -> int:
        url = self.custodian.webhook_url
        if not url:
            return 0
        now_us = self.custodian.clock()
        engine = self.custodian.engine
        with engine.connect() as conn:
            # A transfer's reports go out in the order they were made: only its oldest one not
            # delivered (nor given up) is due.
            pending = store.deliveries.alias("pending")
            oldest = (
                select(func.min(pending.c.id))
                .where(
                    pending.c.delivered_at_us.is_(None),
                    pending.c.attempts < self.attempts_max,
                )
                .group_by(pending.c.transfer_id)
            )
            due = (
                conn.execute(
                    select(store.deliveries)
                    .where(store.deliveries.c.id.in_(oldest), store.deliveries.c.next_attempt_at_us <= now_us)
                    .order_by(store.deliveries.c.id)
                    .limit(DELIVERY_BATCH_MAX)
                )
                .mappings()
                .all()
            )
        done = 0
        for row in due:
            body = row["body"].encode()
            timestamp = str(int(self.clock_s()))
            error: str | None = None
            try:
                answer = self.http.post(
                    url,
                    content=body,
                    headers={
                        "Content-Type": "application/json",
                        TIMESTAMP_HEADER: timestamp,
                        SIGNATURE_HEADER: webhook_signature(self.secret, timestamp, body),
                    },
                )
                if not 200 <= answer.status_code < 300:
                    error = f"answered {answer.status_code}"
            except httpx.HTTPError as exc:
                error = type(exc).__name__
            attempts = row["attempts"] + 1
            values: dict[str, Any] = {"attempts": attempts, "last_error": error}
            if error is not None and attempts >= self.attempts_max:
                # Given up: the bank learns the transfer's state by polling; its operator by this line.
                log.error("webhook for transfer %s given up after %d attempts: %s", row["transfer_id"], attempts, error)
            if error is None:
                values["delivered_at_us"] = self.custodian.clock()
                done += 1
            else:
                values["next_attempt_at_us"] = self.custodian.clock() + min(2 ** (attempts - 1), BACKOFF_MAX_S) * 10**6
            with write_transaction(engine) as conn:
                conn.execute(update(store.deliveries).where(store.deliveries.c.id == row["id"]).values(**values))
        return done


def create_app(custodian: KeptCustody, api_key: str, worker: Worker | None = None) -> FastAPI:
    app = FastAPI(title="andchain reference custodian", docs_url=None, redoc_url=None, openapi_url=None)
    wanted = hashlib.sha256(api_key.encode()).digest()

    if worker is not None:
        app.router.on_startup.append(worker.start)
        app.router.on_shutdown.append(worker.stop)

    @app.exception_handler(DomainError)
    async def refused(request: Request, exc: DomainError) -> JSONResponse:
        return JSONResponse({"code": exc.code, "message": exc.message}, status_code=exc.http_status)

    def authenticated(authorization: str = Header(default="")) -> None:
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(hashlib.sha256(given.encode()).digest(), wanted):
            raise Unauthorized("a valid API key is required (Authorization: Bearer <key>)")

    def body_of(payload: Any) -> dict[str, Any]:
        if not isinstance(payload, dict):
            raise DomainError("the body must be a JSON object", code="invalid_request")
        return payload

    def key_of(value: str | None) -> str:
        if not value or len(value) > 128:
            raise DomainError("Idempotency-Key is required (1-128 characters)", code="idempotency_key_required")
        return value

    auth = [Depends(authenticated)]

    @app.get("/health")
    def health() -> dict[str, Any]:
        return {"status": "ok"}

    @app.get("/v1/status", dependencies=auth)
    def status() -> dict[str, Any]:
        return {"transfers": custodian.counts()}

    @app.post("/v1/accounts", status_code=201, dependencies=auth)
    def create_account(payload: dict[str, Any], idempotency_key: str | None = Header(default=None)) -> Any:
        body = body_of(payload)
        return custodian.create_account(
            str(body.get("name") or ""), str(body.get("owner") or ""), key_of(idempotency_key)
        )

    @app.get("/v1/accounts/{account_id}", dependencies=auth)
    def account(account_id: str) -> Any:
        return custodian.account(account_id)

    @app.post("/v1/accounts/{account_id}/addresses", dependencies=auth)
    def address(account_id: str, payload: dict[str, Any]) -> Any:
        body = body_of(payload)
        return custodian.deposit_address(account_id, str(body.get("asset") or ""), str(body.get("network") or ""))

    @app.get("/v1/accounts/{account_id}/balances", dependencies=auth)
    def balances(account_id: str) -> Any:
        return {"balances": custodian.balances(account_id)}

    @app.post("/v1/transfers", status_code=201, dependencies=auth)
    def submit(payload: dict[str, Any], idempotency_key: str | None = Header(default=None)) -> Any:
        view, made = custodian.submit(body_of(payload), key_of(idempotency_key))
        return view if made else JSONResponse(view, status_code=200)

    @app.get("/v1/transfers/{transfer_id}", dependencies=auth)
    def get(transfer_id: str) -> Any:
        return custodian.get(transfer_id)

    @app.get("/v1/transfers", dependencies=auth)
    def listing(
        idempotency_key: str | None = Query(default=None),
        after: int = Query(default=0, ge=0, le=2**62),
        limit: int = Query(default=100, ge=1, le=500),
    ) -> Any:
        if idempotency_key is not None:
            found = custodian.find(idempotency_key)
            return {"transfers": [found] if found else [], "cursor": after}
        rows, cursor = custodian.list(after, limit)
        return {"transfers": rows, "cursor": cursor}

    @app.post("/v1/transfers/{transfer_id}/cancel", dependencies=auth)
    def cancel(transfer_id: str) -> Any:
        return custodian.cancel(transfer_id)

    return app
