"""Bounds on what a request may be, checked before any route runs.

- Headers: one header line over `header_bytes_max`, or all of them over
  `headers_bytes_max`, is 431 `request_header_fields_too_large`.
- Body: a Content-Length over `body_bytes_max` is 413 `body_too_large` at once,
  before anything is read; a body sent without a length (chunked) is counted as it
  arrives and refused as soon as it passes the limit, so no more than the limit
  plus one chunk is ever held in memory.
- Path and query: U+0000 (NUL), which PostgreSQL cannot compare or store, is 400
  `invalid_request`.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote_to_bytes

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from andchain.api.problems import ApiProblem, problem

BODY_BYTES_MAX = 1024 * 1024


@dataclass(frozen=True, slots=True)
class RequestLimits:
    body_bytes_max: int = BODY_BYTES_MAX
    # One header line (name and value); uvicorn itself refuses a whole head over 16 KiB
    # with a plain 400, so the totals here stay below that to answer with a problem.
    header_bytes_max: int = 8 * 1024
    headers_bytes_max: int = 12 * 1024

    def __post_init__(self) -> None:
        for name in ("body_bytes_max", "header_bytes_max", "headers_bytes_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{name} must be a positive number of bytes, was {value!r}")


class BodyTooLarge(ApiProblem):
    def __init__(self, limit: int) -> None:
        super().__init__(413, "body_too_large", f"the request body must be at most {limit} bytes")


def _head_refusal(scope: Scope, limits: RequestLimits) -> ApiProblem | None:
    total = 0
    content_length: bytes | None = None
    for name, value in scope.get("headers", ()):
        size = len(name) + len(value)
        total += size
        if size > limits.header_bytes_max:
            shown = name.decode("latin-1")[:64]
            return ApiProblem(
                431,
                "request_header_fields_too_large",
                f"header {shown} is {size} bytes; each header may be at most {limits.header_bytes_max}",
            )
        if name == b"content-length":
            content_length = value
    if total > limits.headers_bytes_max:
        return ApiProblem(
            431,
            "request_header_fields_too_large",
            f"the headers are {total} bytes together; at most {limits.headers_bytes_max} are allowed",
        )
    if content_length is not None:
        text = content_length.strip()
        if not text.isdigit() or not text.isascii():
            return ApiProblem(400, "invalid_request", "Content-Length must be a number of bytes")
        if len(text) > 19 or int(text) > limits.body_bytes_max:
            return BodyTooLarge(limits.body_bytes_max)
    if "\x00" in scope.get("path", ""):
        return ApiProblem(400, "invalid_request", "the path must not contain U+0000 (NUL, %00)")
    if b"\x00" in unquote_to_bytes(scope.get("query_string", b"")):
        return ApiProblem(400, "invalid_request", "the query must not contain U+0000 (NUL, %00)")
    return None


class RequestLimitsMiddleware:
    """Pure ASGI, so that nothing is buffered before the limits are applied."""

    def __init__(self, app: ASGIApp, limits: RequestLimits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        refusal = _head_refusal(scope, self.limits)
        if refusal is not None:
            await problem(refusal.status, refusal.code, refusal.message)(scope, receive, send)
            return
        body_bytes_max = self.limits.body_bytes_max
        received = 0
        started = False

        async def receive_bounded() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > body_bytes_max:
                    # Raised inside the route that reads the body; its problem handler answers 413.
                    raise BodyTooLarge(body_bytes_max)
            return message

        async def send_tracked(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive_bounded, send_tracked)
        except BodyTooLarge as exc:
            # Read somewhere without a problem handler around it: answer here if we still can.
            if started:
                raise
            await problem(exc.status, exc.code, exc.message)(scope, receive, send)
