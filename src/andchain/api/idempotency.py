"""Idempotency-Key for every POST: stored before the side effect, replayed after it.

Same key + same body returns the first response (with `Idempotent-Replayed: true`);
the same key with a different body is a 409. A key whose first request is still
running is a 409 too, until it goes stale: the domain operations under it are
idempotent themselves (a transfer's id defaults to the key), so re-running a
request whose process died half-way cannot book anything twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from fastapi.responses import JSONResponse
from sqlalchemy import BigInteger, Column, Engine, Integer, String, Table, Text, delete, select, update
from sqlalchemy.exc import IntegrityError

from andchain.api.problems import ApiProblem
from andchain.db import metadata, write_transaction
from andchain.errors import DomainError
from andchain.ledger.model import Clock

KEY_LENGTH_MAX = 255

keys = Table(
    "api_idempotency_keys",
    metadata,
    Column("scope", String(200), primary_key=True),
    Column("key", String(KEY_LENGTH_MAX), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

Handler = Callable[[], tuple[int, dict[str, Any]]]


def request_hash(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_key(key: str | None) -> str:
    if key is None or not key.strip():
        raise ApiProblem(
            400,
            "idempotency_key_required",
            "this request moves or creates something: send an "
            "Idempotency-Key header (any unique string up to 255 characters)",
        )
    if len(key) > KEY_LENGTH_MAX:
        raise ApiProblem(
            400,
            "idempotency_key_invalid",
            f"Idempotency-Key must be at most {KEY_LENGTH_MAX} characters, was {len(key)}",
        )
    return key


class IdempotencyStore:
    def __init__(self, engine: Engine, clock: Clock, stale_after_s: int) -> None:
        self.engine = engine
        self.clock = clock
        self.stale_after_us = stale_after_s * 1_000_000

    def run(self, scope: str, key: str, payload: Any, handler: Handler) -> JSONResponse:
        digest = request_hash(payload)
        replay = self._claim(scope, key, digest)
        if replay is not None:
            return replay
        try:
            status, body = handler()
        except DomainError as exc:
            # A refusal is a result too: the same request will be refused the same way.
            status = exc.status if isinstance(exc, ApiProblem) else exc.http_status
            body = {
                "type": "https://andchain.dev/problems/" + exc.code,
                "title": exc.code.replace("_", " "),
                "status": status,
                "code": exc.code,
                "detail": exc.message,
            }
            self._finish(scope, key, status, body)
            return JSONResponse(body, status_code=status, media_type="application/problem+json")
        except BaseException:
            # Unexpected failure: forget the key so that a retry runs again.
            with write_transaction(self.engine) as conn:
                conn.execute(delete(keys).where(keys.c.scope == scope, keys.c.key == key))
            raise
        self._finish(scope, key, status, body)
        return JSONResponse(body, status_code=status)

    def _claim(self, scope: str, key: str, digest: str) -> JSONResponse | None:
        now = self.clock()
        try:
            with write_transaction(self.engine) as conn:
                conn.execute(
                    keys.insert().values(
                        scope=scope, key=key, request_hash=digest, state="started", created_at_us=now, updated_at_us=now
                    )
                )
            return None
        except IntegrityError:
            pass
        with write_transaction(self.engine) as conn:
            row = conn.execute(select(keys).where(keys.c.scope == scope, keys.c.key == key)).first()
            if row is None:  # deleted in between by a failed first attempt
                conn.execute(
                    keys.insert().values(
                        scope=scope, key=key, request_hash=digest, state="started", created_at_us=now, updated_at_us=now
                    )
                )
                return None
            if row.request_hash != digest:
                raise ApiProblem(
                    409,
                    "idempotency_key_reused",
                    f"Idempotency-Key {key!r} was already used for a "
                    "different request; use a new key for a new request",
                )
            if row.state == "done":
                media = "application/problem+json" if row.status_code >= 400 else "application/json"
                return JSONResponse(
                    json.loads(row.response_body),
                    status_code=row.status_code,
                    media_type=media,
                    headers={"Idempotent-Replayed": "true"},
                )
            if now - row.updated_at_us < self.stale_after_us:
                raise ApiProblem(
                    409,
                    "idempotency_key_in_use",
                    f"a request with Idempotency-Key {key!r} is still being processed; retry later",
                )
            taken = conn.execute(
                update(keys)
                .where(keys.c.scope == scope, keys.c.key == key, keys.c.updated_at_us == row.updated_at_us)
                .values(updated_at_us=now)
            )
            if taken.rowcount != 1:
                raise ApiProblem(
                    409,
                    "idempotency_key_in_use",
                    f"a request with Idempotency-Key {key!r} is being retried concurrently",
                )
        return None

    def _finish(self, scope: str, key: str, status: int, body: dict[str, Any]) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(
                update(keys)
                .where(keys.c.scope == scope, keys.c.key == key)
                .values(state="done", status_code=status, response_body=json.dumps(body), updated_at_us=self.clock())
            )
