"""Errors as RFC 9457 problem+json with andchain's stable codes; never a stack trace."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match

from andchain.errors import DomainError

log = logging.getLogger(__name__)

PROBLEM_TYPE = "https://andchain.dev/problems/"
PROBLEM_MEDIA_TYPE = "application/problem+json"
# Validation errors listed in one problem, at most: a batch of 8,190 bad transfers
# must not turn into a multi-megabyte error document.
ERRORS_MAX = 100


class ProblemError(BaseModel):
    """One reason a request was refused."""

    location: str = Field(description="where in the request, e.g. body.transfers.3.amount or query.limit")
    message: str
    index: int | None = Field(default=None, description="batch only: the index of the transfer it concerns")
    code: str | None = Field(default=None, description="the stable code of this reason, when it has its own")


class Problem(BaseModel):
    """An error (RFC 9457 problem details). `code` is stable; `detail` is for people."""

    model_config = ConfigDict(extra="allow")

    type: str = Field(examples=[PROBLEM_TYPE + "insufficient_funds"])
    title: str = Field(examples=["insufficient funds"])
    status: int = Field(examples=[422])
    code: str = Field(examples=["insufficient_funds"])
    detail: str
    errors: list[ProblemError] | None = Field(default=None, description="every reason, for validation errors")


def problem_body(status: int, code: str, detail: str, **extra: Any) -> dict[str, Any]:
    return {
        "type": PROBLEM_TYPE + code,
        "title": code.replace("_", " "),
        "status": status,
        "code": code,
        "detail": detail,
        **extra,
    }


def problem(status: int, code: str, detail: str, headers: dict[str, str] | None = None, **extra: Any) -> JSONResponse:
    return JSONResponse(
        problem_body(status, code, detail, **extra), status_code=status, media_type=PROBLEM_MEDIA_TYPE, headers=headers
    )


class ApiProblem(DomainError):
    """A refusal raised by the API layer itself (missing header, key reuse...)."""

    def __init__(
        self, status: int, code: str, message: str, *, headers: dict[str, str] | None = None, **details: Any
    ) -> None:
        super().__init__(message, code=code, **details)
        self.status = status
        self.headers = headers or {}


def status_of(exc: DomainError) -> int:
    return exc.status if isinstance(exc, ApiProblem) else exc.http_status


def body_of(exc: DomainError) -> dict[str, Any]:
    """The problem document of a refusal; an ApiProblem's details become top-level members."""
    if isinstance(exc, ApiProblem):
        return problem_body(exc.status, exc.code, exc.message, **exc.details)
    return problem_body(exc.http_status, exc.code, exc.message, **({"details": exc.details} if exc.details else {}))


def validation_errors(raw: list[Any]) -> list[dict[str, Any]]:
    """Pydantic's errors as ProblemError items; a batch's errors name the transfer's index."""
    errors: list[dict[str, Any]] = []
    for err in raw[:ERRORS_MAX]:
        loc = tuple(err.get("loc", ()))
        item: dict[str, Any] = {"location": ".".join(str(p) for p in loc), "message": str(err.get("msg", ""))}
        if loc[:2] == ("body", "transfers") and len(loc) > 2 and isinstance(loc[2], int):
            item["index"] = loc[2]
        errors.append(item)
    return errors


_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS")


def _allowed_methods(request: Request) -> str:
    """Every method some route serves at this path: 405's `Allow` header (RFC 9110).

    Each method is tried against the routes with a fresh scope (the request's own
    already carries the route the router picked, which serves only some of them).
    """
    scope = {"type": "http", "path": request.scope["path"], "root_path": request.scope.get("root_path", "")}
    allowed = [
        method
        for method in _METHODS
        if any(route.matches({**scope, "method": method})[0] == Match.FULL for route in request.app.router.routes)
    ]
    return ", ".join(allowed)


def install(app: FastAPI) -> None:
    @app.exception_handler(DomainError)
    async def _domain(_: Request, exc: DomainError) -> JSONResponse:
        body = body_of(exc)
        headers = exc.headers if isinstance(exc, ApiProblem) else None
        return JSONResponse(body, status_code=body["status"], media_type=PROBLEM_MEDIA_TYPE, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = validation_errors(list(exc.errors()))
        summary = "; ".join(
            (f"transfer {e['index']}: " if "index" in e else "") + f"{e['location']}: {e['message']}"
            for e in errors[:5]
        )
        return problem(422, "invalid_request", f"the request is not valid: {summary}", errors=errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        headers = dict(exc.headers or {})
        if exc.status_code == 405:
            headers["Allow"] = _allowed_methods(request)
        return problem(exc.status_code, code, str(exc.detail), headers=headers or None)

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error method=%s path=%s", request.method, request.url.path)
        return problem(
            500, "internal_error", "an internal error occurred and was logged; retry with the same Idempotency-Key"
        )


# What every route may answer besides its own codes.
_ANY_ROUTE = {
    400: (
        "invalid_request: the path or the query holds U+0000 (NUL); invalid_host: the Host header is not a name "
        "this API answers to (api.allowed_hosts)"
    ),
    429: "rate_limited: this caller's reads or writes are over their limit; retry after Retry-After seconds",
    422: "invalid_request: a query parameter the route does not declare",
    431: "request_header_fields_too_large: a header line or all headers together are over the limit",
    500: "internal_error: a bug, logged with the request; a POST may be retried with the same Idempotency-Key",
}
# What every POST may answer besides its own codes.
_ANY_POST = {
    400: (
        "idempotency_key_required / idempotency_key_invalid: no usable Idempotency-Key; invalid_json: the body is "
        "not JSON, not UTF-8, has a duplicate key or NaN/Infinity"
    ),
    409: (
        "idempotency_key_reused: the key was used for a different request; idempotency_key_in_use: the first "
        "request under this key is still running"
    ),
    413: "body_too_large: the body is over the configured maximum (1 MiB by default)",
    415: "unsupported_media_type: a body that is not application/json",
    422: "invalid_request: the body does not match the schema (every reason in `errors`)",
}


_AUTHENTICATED = {
    401: "unauthenticated: no API key, or one unknown, revoked or expired (see WWW-Authenticate)",
    403: "forbidden: the key's role may not call this route",
}


def responses(
    success: dict[int, str],
    refusals: dict[int, str] | None = None,
    *,
    post: bool = False,
    authenticated: bool = True,
    models: dict[int, type[BaseModel]] | None = None,
) -> dict[int | str, dict[str, Any]]:
    """The responses of one route for the OpenAPI document: its successes, and every
    problem it can answer, described as application/problem+json with the Problem schema.
    `models` gives the body of a success other than the route's own status (a 200 beside a 201)."""
    problems: dict[int, list[str]] = {}
    for table in (refusals or {}, _ANY_POST if post else {}, _AUTHENTICATED if authenticated else {}, _ANY_ROUTE):
        for status, meaning in table.items():
            problems.setdefault(status, []).append(meaning)
    result: dict[int | str, dict[str, Any]] = {status: {"description": text} for status, text in success.items()}
    for status, model in (models or {}).items():
        result[status]["model"] = model
    if post:
        replayed = {
            "Idempotent-Replayed": {
                "description": "true when this is the stored response to an earlier request with the same key",
                "schema": {"type": "string", "enum": ["true"]},
            }
        }
        for status in success:
            result[status]["headers"] = replayed
    for status in sorted(problems):
        # The content type is moved from application/json to application/problem+json
        # when the document is generated (see andchain.api.app).
        result[status] = {"model": Problem, "description": "; ".join(problems[status])}
    if 429 in result:
        result[429]["headers"] = {
            "Retry-After": {
                "description": "seconds to wait before the limit allows this caller's request again",
                "schema": {"type": "string", "pattern": "^[0-9]+$"},
            }
        }
    return result
