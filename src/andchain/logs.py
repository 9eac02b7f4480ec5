"""Structured logs: one JSON object per line, with the request id of the request being served.

`andchain serve` and `andchain worker` call `configure_logging`. Every record then carries
the time, level, logger and message, the `request_id` bound to the current context (the
API binds one per request, see andchain.api.observe), the fields passed with `extra=`,
and the traceback of an exception.

What never reaches a log: secrets and request bodies. The API logs the method, the
route, the path (never the query, never a header, never a body) and the key id of the
caller, not its key. As a second line of defence, an `extra` field whose name says it
holds a secret is replaced by "[redacted]", and so is a bearer credential found in a
message.
"""

from __future__ import annotations

import json
import logging
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

# The request id of the request this code runs for. The API sets it for each request;
# run_in_threadpool copies the context, so synchronous routes and whatever they call
# (an operation created by a route) see it too.
request_id: ContextVar[str | None] = ContextVar("andchain_request_id", default=None)

REDACTED = "[redacted]"
# Names of `extra` fields whose values are never written, whatever they hold (not "token" alone:
# here a token is usually the deposit token).
_SECRET_NAME = re.compile(
    r"authorization|api_?key|secret|passphrase|password|credential|access_token|refresh_token|cookie|private_?key", re.I
)
_BEARER = re.compile(r"(bearer\s+)[^\s\"',;]+", re.I)
# Attributes every LogRecord has; anything else on a record came from `extra=`.
# uvicorn's color_message repeats the message with terminal colours.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime", "request_id", "color_message"}


def current_request_id() -> str | None:
    return request_id.get()


def with_request_id(state: dict[str, Any]) -> dict[str, Any]:
    """`state` with the current request id under "request_id" (when there is one and it has none).

    Operations.create stores it in the state of every operation a request creates, so that an
    operation can be traced back to the request (and its log lines) that asked for it."""
    rid = request_id.get()
    if rid is None or "request_id" in state:
        return state
    return {**state, "request_id": rid}


def redact(text: str) -> str:
    return _BEARER.sub(r"\1" + REDACTED, text)


class RequestIdFilter(logging.Filter):
    """Binds the context's request id to each record as it is emitted (in the emitting thread)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "request_id", None) is None:
            record.request_id = request_id.get()
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: ts, level, logger, message, request_id, the `extra` fields, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, tz=UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        rid = getattr(record, "request_id", None)
        if rid is not None:
            entry["request_id"] = rid
        for name, value in record.__dict__.items():
            if name in _RECORD_FIELDS or name.startswith("_"):
                continue
            entry[name] = REDACTED if _SECRET_NAME.search(name) else value
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        elif record.exc_text:
            entry["exc"] = redact(record.exc_text)
        return json.dumps(entry, default=str, ensure_ascii=False)


def configure_logging(level: str | int = "INFO", *, stream: TextIO | None = None) -> logging.Handler:
    """Log JSON lines at `level` to `stream` (stderr), for the root logger and uvicorn's.

    A root logger already at DEBUG (`andchain --verbose`) stays at DEBUG. Returns the handler."""
    root = logging.getLogger()
    verbose = root.level == logging.DEBUG
    if isinstance(level, str):
        level = level.upper()
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter())
    handler.addFilter(RequestIdFilter())
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.DEBUG if verbose else level)
    # uvicorn's loggers write through the root handler, as JSON; its access log is off
    # (the API writes its own, with the request id and the route, see andchain.api.observe).
    for name in ("uvicorn", "uvicorn.error", "uvicorn.access"):
        logger = logging.getLogger(name)
        logger.handlers.clear()
        logger.propagate = True
        logger.setLevel(logging.NOTSET)  # the root's level decides, whatever uvicorn set before
    # Alembic notes its context on every schema look-up (/health makes one per call); httpx notes every
    # request with its full URL (a node provider's URL carries its API key), hundreds per second.
    for name in ("alembic", "httpx", "httpcore"):
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.WARNING)
    return handler
