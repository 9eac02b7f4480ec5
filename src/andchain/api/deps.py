"""Request-scoped access to the context and the idempotency store."""

from __future__ import annotations

import base64
import binascii

from fastapi import Request

from andchain.api.idempotency import IdempotencyStore
from andchain.api.problems import ApiProblem
from andchain.context import Context


def context(request: Request) -> Context:
    ctx: Context = request.app.state.context
    return ctx


def idempotency(request: Request) -> IdempotencyStore:
    store: IdempotencyStore = request.app.state.idempotency
    return store


def encode_cursor(value: int) -> str:
    return base64.urlsafe_b64encode(f"v1:{value}".encode()).decode().rstrip("=")


def decode_cursor(cursor: str | None) -> int:
    if not cursor:
        return 0
    try:
        text = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        prefix, _, value = text.partition(":")
        if prefix != "v1" or not value.isdigit():
            raise ValueError(text)
        return int(value)
    except (ValueError, binascii.Error, UnicodeDecodeError):
        raise ApiProblem(400, "invalid_cursor", "cursor is not one this API returned; start without a cursor") from None
