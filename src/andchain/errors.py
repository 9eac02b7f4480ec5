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
    # A transient error (a node that does not answer, a timeout, a busy database) says
    # nothing about the request: whoever meets it waits and tries again. Only a refusal
    # that is not transient (a revert with a reason, a ledger refusal) may end an operation.
    transient: ClassVar[bool] = False
    # A refusal that depends on a moment, not on the request (it changed while being written: try
    # again): the same request sent again may succeed, so it is never stored as the request's answer.
    try_again: ClassVar[bool] = False

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


class Unavailable(DomainError):
    """Something andchain depends on did not answer in time (a node, the database): try again later."""

    code = "unavailable"
    http_status = 503
    transient = True


def is_transient(exc: BaseException) -> bool:
    """Whether an error means "wait and try again" rather than "this request is refused"."""
    from sqlalchemy.exc import OperationalError

    if isinstance(exc, DomainError):
        return exc.transient
    return isinstance(exc, OperationalError | TimeoutError | ConnectionError)


class InvariantBroken(AssertionError):
    """A broken invariant: a bug or corruption. The process must stop, not carry on."""
