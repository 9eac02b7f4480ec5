"""Request-scoped access to the context and the idempotency store."""

from __future__ import annotations

import base64
import binascii
import re
import threading
from collections.abc import Callable
from typing import TypeVar

from fastapi import Request

from andchain.api.idempotency import IdempotencyStore
from andchain.api.problems import ApiProblem
from andchain.context import Context
from andchain.tokens.service import TokenService

_service_lock = threading.Lock()
T = TypeVar("T")


def context(request: Request) -> Context:
    ctx: Context = request.app.state.context
    return ctx


def idempotency(request: Request) -> IdempotencyStore:
    store: IdempotencyStore = request.app.state.idempotency
    return store


def app_service(request: Request, name: str, make: Callable[[], T]) -> T:
    """The app's one service kept as `app.state.<name>`, made on first use (once, whatever the threads)."""
    state = request.app.state
    service: T | None = getattr(state, name, None)
    if service is None:
        with _service_lock:
            service = getattr(state, name, None)
            if service is None:
                service = make()
                setattr(state, name, service)
    return service


def token_service(request: Request) -> TokenService:
    """The app's one TokenService (made on first use: an app serving only the ledger never builds it)."""
    return app_service(request, "tokens", lambda: TokenService(context(request)))


# Cursors carry a row id or sequence number: a 64-bit signed integer in the database.
CURSOR_VALUE_MAX = 2**63 - 1
# A cursor this API returns is at most 30 characters; anything far longer is not one.
CURSOR_LENGTH_MAX = 64


def encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{value}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        if len(cursor) > CURSOR_LENGTH_MAX or not cursor.isascii():
            raise ValueError(cursor)
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        prefix, _, value = text.partition(":")
        # ASCII digits only: "²".isdigit() is True, and int() refuses it.
        if prefix != "v1" or not value.isascii() or not value.isdigit() or len(value) > 19:
            raise ValueError(text)
        number = int(value)
        if number > CURSOR_VALUE_MAX:
            raise ValueError(text)
        return number
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiProblem(400, "invalid_cursor", "cursor is not one this API returned; start without a cursor") from None


# Cursors over rows whose ids are text (operations, clients, rules: time-ordered ids).
_ID_CURSOR = re.compile(r"[0-9A-Za-z]{1,32}", re.ASCII)


def encode_id_cursor(value: str) -> str:
    return base64.urlsafe_b64encode(f"v1:{value}".encode()).decode().rstrip("=")


def decode_id_cursor(cursor: str | None) -> str | None:
    """The id a cursor of `encode_id_cursor` carries (None: from the start); 400 for anything else."""
    if not cursor:
        return None
    try:
        if len(cursor) > CURSOR_LENGTH_MAX or not cursor.isascii():
            raise ValueError(cursor)
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode("ascii")
        prefix, _, value = text.partition(":")
        if prefix != "v1" or not _ID_CURSOR.fullmatch(value):
            raise ValueError(text)
        return value
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiProblem(400, "invalid_cursor", "cursor is not one this API returned; start without a cursor") from None
