"""Idempotency-Key for every POST: stored before the side effect, replayed after it.

Same key + same body returns the first response (with `Idempotent-Replayed: true`);
the same key with a different body is a 409. A key whose first request is still
running is a 409 too, until it goes stale: the domain operations under it are
idempotent themselves (a transfer's id is derived from the key, see
`default_transfer_id`), so re-running a request whose process died half-way cannot
book anything twice.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.responses import JSONResponse
from sqlalchemy import BigInteger, Column, Connection, Engine, Integer, String, Table, Text, delete, select, update
from sqlalchemy.exc import IntegrityError

from andchain.api.problems import PROBLEM_MEDIA_TYPE, ApiProblem, body_of
from andchain.db import metadata, write_transaction
from andchain.errors import DomainError
from andchain.ledger.model import ID_LENGTH_MAX, Clock

KEY_LENGTH_MAX = 255
SCOPE_LENGTH_MAX = 200
HEADER = "Idempotency-Key"
DIGEST_PREFIX = "key-sha256:"
# Printable ASCII, at least one of them not a space.
KEY_PATTERN = r"^[ -~]*[!-~][ -~]*$"

keys = Table(
    "api_idempotency_keys",
    metadata,
    Column("scope", String(SCOPE_LENGTH_MAX), primary_key=True),
    Column("key", String(KEY_LENGTH_MAX), primary_key=True),
    Column("request_hash", String(64), nullable=False),
    Column("state", String(16), nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("response_body", Text, nullable=True),
    Column("created_at_us", BigInteger, nullable=False),
    Column("updated_at_us", BigInteger, nullable=False),
)

Handler = Callable[[], tuple[int, dict[str, Any]]]
AtomicHandler = Callable[[Connection], tuple[int, dict[str, Any]]]


def request_hash(payload: Any) -> str:
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(canonical.encode()).hexdigest()


def default_transfer_id(key_id: str, kind: str, key: str, index: int | None = None) -> str:
    """The id of a transfer whose request names none, derived from the caller's API key id,
    the kind of request and its Idempotency-Key: `<key id>:<tag>:<key>`.

    The tag is the kind (`t` a transfer, `post`, `void`), or `b<i>` for a batch's transfer i.
    Neither the key id nor the tag holds a colon, so two callers, two kinds of request or two
    batch indexes never derive the same id. Transfer ids are at most 128 characters and keys
    up to 255, so a key that does not fit is replaced by a stable digest of it:
    `key-sha256:<64 hex digits>`. The same key always gives the same ids, so a retried request
    finds its transfers.
    """
    tag = kind if index is None else f"b{index}"
    if ":" in key_id or ":" in tag:
        raise AssertionError(f"a key id and a tag hold no colon: {key_id!r}, {tag!r}")
    prefix = f"{key_id}:{tag}:"
    return prefix + (key if len(prefix) + len(key) <= ID_LENGTH_MAX else _digest(key))


def _digest(key: str) -> str:
    return DIGEST_PREFIX + hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def openapi_parameter() -> dict[str, Any]:
    """The header as the OpenAPI document states it: required on every POST."""
    return {
        "name": HEADER,
        "in": "header",
        "required": True,
        "description": (
            "Unique per request: 1 to 255 printable ASCII characters, not only spaces. The same key "
            "with the same body returns the first response (Idempotent-Replayed: true); with another "
            "body it is 409 idempotency_key_reused. Missing or invalid: 400 idempotency_key_required / "
            "idempotency_key_invalid. A transfer's id defaults to one derived from it (docs/api.md)."
        ),
        "schema": {"type": "string", "minLength": 1, "maxLength": KEY_LENGTH_MAX, "pattern": KEY_PATTERN},
    }


def idempotency_key(request: Request) -> str:
    """The request's Idempotency-Key (a dependency of every POST), checked."""
    return check_key(request.headers.get(HEADER))


def check_key(key: str | None) -> str:
    if key is None or not key.strip(" \t"):
        raise ApiProblem(
            400,
            "idempotency_key_required",
            "this request moves or creates something: send an "
            "Idempotency-Key header (any unique string of printable ASCII, up to 255 characters)",
        )
    if len(key) > KEY_LENGTH_MAX:
        raise ApiProblem(
            400,
            "idempotency_key_invalid",
            f"Idempotency-Key must be at most {KEY_LENGTH_MAX} characters, was {len(key)}",
        )
    if not all(" " <= c <= "~" for c in key):
        raise ApiProblem(
            400, "idempotency_key_invalid", "Idempotency-Key must be printable ASCII (no control characters)"
        )
    return key


class IdempotencyStore:
    def __init__(self, engine: Engine, clock: Clock, stale_after_s: int) -> None:
        self.engine = engine
        self.clock = clock
        self.stale_after_us = stale_after_s * 1_000_000

    def run(self, scope: str, key: str, payload: Any, handler: Handler) -> JSONResponse:
        """Run `handler` once per (scope, key). The scope is the route's template, never a
        value from the request (the column holds 200 characters); whatever else tells two
        requests apart, such as a path's transfer id, belongs in `payload`."""
        if len(scope) > SCOPE_LENGTH_MAX:
            raise AssertionError(f"idempotency scope must be at most {SCOPE_LENGTH_MAX} characters: {scope[:80]!r}")
        digest = request_hash(payload)
        replay = self._claim(scope, key, digest)
        if replay is not None:
            return replay
        try:
            status, body = handler()
        except DomainError as exc:
            if exc.transient or exc.try_again:
                # A node or the database that did not answer, or an operation that changed meanwhile,
                # says nothing about the request: forget the key, so that the same request runs again.
                self._forget(scope, key)
                raise
            # A refusal is a result too: the same request will be refused the same way.
            body = body_of(exc)
            status = body["status"]
            self._finish(scope, key, status, body)
            return JSONResponse(body, status_code=status, media_type=PROBLEM_MEDIA_TYPE)
        except BaseException:
            # Unexpected failure: forget the key so that a retry runs again.
            self._forget(scope, key)
            raise
        self._finish(scope, key, status, body)
        return JSONResponse(body, status_code=status)

    def run_atomic(self, scope: str, key: str, payload: Any, handler: AtomicHandler) -> JSONResponse:
        """Like `run`, for a handler that only writes to this database: the key, the handler's writes
        and its stored answer commit in ONE transaction (one write instead of three). A crash leaves
        nothing behind, so a retry simply runs again; a refusal rolls the handler's writes back and
        is stored as the answer."""
        if len(scope) > SCOPE_LENGTH_MAX:
            raise AssertionError(f"idempotency scope must be at most {SCOPE_LENGTH_MAX} characters: {scope[:80]!r}")
        digest = request_hash(payload)
        for _ in range(3):
            try:
                with write_transaction(self.engine) as conn:
                    row = conn.execute(select(keys).where(keys.c.scope == scope, keys.c.key == key)).first()
                    if row is not None:
                        replay = self._answer(row, key, digest)
                        if replay is not None:
                            return replay
                        conn.execute(delete(keys).where(keys.c.scope == scope, keys.c.key == key))  # a stale start
                    try:
                        with conn.begin_nested():
                            status, body = handler(conn)
                    except DomainError as exc:
                        if exc.transient or exc.try_again:
                            raise  # nothing is stored: the same request sent again runs again
                        body = body_of(exc)
                        status = body["status"]
                    now = self.clock()
                    conn.execute(
                        keys.insert().values(
                            scope=scope,
                            key=key,
                            request_hash=digest,
                            state="done",
                            status_code=status,
                            response_body=json.dumps(body),
                            created_at_us=now,
                            updated_at_us=now,
                        )
                    )
            except IntegrityError:
                continue  # another process stored this key first: read its answer
            media = PROBLEM_MEDIA_TYPE if status >= 400 else "application/json"
            return JSONResponse(body, status_code=status, media_type=media)
        raise ApiProblem(409, "idempotency_key_in_use", f"Idempotency-Key {key!r} is being used concurrently")

    def _answer(self, row: Any, key: str, digest: str) -> JSONResponse | None:
        """What a stored key answers: a replay, a conflict, or None when its first request died (stale)."""
        if row.request_hash != digest:
            raise ApiProblem(
                409,
                "idempotency_key_reused",
                f"Idempotency-Key {key!r} was already used for a different request; use a new key for a new request",
            )
        if row.state == "done":
            media = PROBLEM_MEDIA_TYPE if row.status_code >= 400 else "application/json"
            return JSONResponse(
                json.loads(row.response_body),
                status_code=row.status_code,
                media_type=media,
                headers={"Idempotent-Replayed": "true"},
            )
        if self.clock() - row.updated_at_us < self.stale_after_us:
            raise ApiProblem(
                409,
                "idempotency_key_in_use",
                f"a request with Idempotency-Key {key!r} is still being processed; retry later",
            )
        return None

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
                media = PROBLEM_MEDIA_TYPE if row.status_code >= 400 else "application/json"
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

    def _forget(self, scope: str, key: str) -> None:
        with write_transaction(self.engine) as conn:
            conn.execute(delete(keys).where(keys.c.scope == scope, keys.c.key == key))
