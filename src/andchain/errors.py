"""Domain errors with stable codes.

Every error a client can see carries a `code` that never changes meaning; the API
maps it to problem+json and an HTTP status, the CLI to a message and exit code.
"""

from __future__ import annotations

from typing import Any, ClassVar


class DomainError(Exception):
    """An expected refusal: bad input or a rule of the bank. Never a bug."""

    code: ClassVar[str] = "invalid_request"
    http_status: ClassVar[int] = 422

    def __init__(self, message: str, *, code: str | None = None, **details: Any) -> None:
        super().__init__(message)
        self.message = message
        if code is not None:
            self.code = code  # type: ignore[misc]
        self.details = details


class NotFound(DomainError):
    code = "not_found"
    http_status = 404


class Conflict(DomainError):
    code = "conflict"
    http_status = 409


class InvariantBroken(AssertionError):
    """A broken invariant: a bug or corruption. The process must stop, not carry on."""
