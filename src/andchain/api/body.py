"""Request bodies: read within the size limit, parsed once and strictly.

Every route of the API uses `StrictJSONRoute`. Before FastAPI sees a body, the route
reads it (the size limit is enforced while reading, see `limits`), requires a JSON
media type, and parses it with `json` once: a duplicate key (`{"amount": "1",
"amount": "2"}`, which json.loads would silently resolve to the last one), NaN or
Infinity, text that is not UTF-8, or nesting deeper than `DEPTH_MAX` is refused, as
is any string holding U+0000 (PostgreSQL cannot store it) or a lone surrogate (it
cannot be encoded). FastAPI then validates the parsed value against the route's model.

A query parameter the route does not declare is refused too (422 `invalid_request`), as
an unknown body field is: a misspelt filter (`?stauts=failed`) must not silently return
everything. So is a parameter of one value given twice (`?kind=mint&kind=pay` would otherwise
answer for the last one only).
"""

from __future__ import annotations

import collections.abc
import email.message
import json
import math
import typing
from collections.abc import Callable, Coroutine
from typing import Any

from fastapi import Request, Response
from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute

from andchain.api import ratelimit
from andchain.api.problems import ERRORS_MAX, ApiProblem

DEPTH_MAX = 32
_LOCATION_PART_MAX = 40


class _DuplicateKey(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


def _object(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise _DuplicateKey(key)
        result[key] = value
    return result


def _constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _invalid_json(detail: str) -> ApiProblem:
    return ApiProblem(400, "invalid_json", f"the body is not valid JSON: {detail}")


def parse_json(raw: bytes) -> Any:
    """The body as JSON, or a 400 `invalid_json` problem."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise _invalid_json("it must be UTF-8") from None
    try:
        value = json.loads(text, object_pairs_hook=_object, parse_constant=_constant)
    except _DuplicateKey as exc:
        raise _invalid_json(f"the key {exc.key[:_LOCATION_PART_MAX]!r} appears twice in one object") from None
    except json.JSONDecodeError as exc:
        raise _invalid_json(f"{exc.msg} at line {exc.lineno} column {exc.colno}") from None
    except ValueError as exc:  # NaN/Infinity, or an integer beyond Python's 4,300-digit limit
        raise _invalid_json(str(exc)) from None
    except RecursionError:
        raise _invalid_json(f"nested more than {DEPTH_MAX} levels deep") from None
    check_values(value)
    return value


def _location(parts: tuple[str | int, ...]) -> str:
    return ".".join(str(p)[:_LOCATION_PART_MAX] for p in parts)


def _refuse(parts: tuple[str | int, ...], message: str) -> ApiProblem:
    where = _location(parts)
    return ApiProblem(
        422,
        "invalid_request",
        f"the request is not valid: {where}: {message}",
        errors=[{"location": where, "message": message}],
    )


def _check_text(text: str, parts: tuple[str | int, ...]) -> None:
    if "\x00" in text:
        raise _refuse(parts, "text must not contain U+0000 (NUL)")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(parts, "text must not contain a lone surrogate (U+D800 to U+DFFF)") from None


def check_values(value: Any) -> None:
    """Walk a parsed body without recursion: bounded depth, storable strings, finite numbers."""
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ("body",))]
    while stack:
        item, parts = stack.pop()
        if len(parts) > DEPTH_MAX + 1:
            raise _refuse(parts[: DEPTH_MAX + 1], f"nested more than {DEPTH_MAX} levels deep")
        if isinstance(item, str):
            _check_text(item, parts)
        elif isinstance(item, float) and not math.isfinite(item):
            raise _refuse(parts, "numbers must be finite")
        elif isinstance(item, dict):
            for key, child in item.items():
                _check_text(key, (*parts, key))
                stack.append((child, (*parts, key)))
        elif isinstance(item, list):
            stack.extend((child, (*parts, i)) for i, child in enumerate(item))


def _is_json(content_type: str | None) -> bool:
    if not content_type:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (subtype == "json" or subtype.endswith("+json"))


class StrictJSONRequest(Request):
    """A request whose `json()` is the strictly parsed body (parsed at most once)."""

    _parsed: Any

    async def json(self) -> Any:
        if not hasattr(self, "_parsed"):
            self._parsed = parse_json(await self.body())
        return self._parsed


def _query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameters a route declares, its dependencies' included."""
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        names.update(param.alias for param in current.query_params)
        pending.extend(current.dependencies)
    return frozenset(names)


def _is_sequence(annotation: Any) -> bool:
    origin = typing.get_origin(annotation)
    if origin in (list, tuple, set, frozenset, collections.abc.Sequence):
        return True
    return any(_is_sequence(arg) for arg in typing.get_args(annotation)) if origin is not None else False


def _single_query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameters a route declares with one value (given twice, they are refused)."""
    names: set[str] = set()
    pending = [dependant]
    while pending:
        current = pending.pop()
        names.update(p.alias for p in current.query_params if not _is_sequence(p.field_info.annotation))
        pending.extend(current.dependencies)
    return frozenset(names)


def _unknown_query(request: Request, known: frozenset[str], single: frozenset[str] = frozenset()) -> ApiProblem | None:
    repeated = sorted({name for name, _ in request.query_params.multi_items() if name in single
                       and len(request.query_params.getlist(name)) > 1})  # fmt: skip
    if repeated:
        return ApiProblem(
            422,
            "invalid_request",
            f"the request is not valid: query parameter {repeated[0][:_LOCATION_PART_MAX]!r} is given more than once",
            errors=[{"location": _location(("query", n)), "message": "given more than once"} for n in repeated][
                :ERRORS_MAX
            ],
        )
    unknown = sorted({name for name in request.query_params if name not in known})
    if not unknown:
        return None
    errors = [{"location": _location(("query", name)), "message": "unknown query parameter"} for name in unknown]
    accepted = ", ".join(sorted(known)) or "none"
    return ApiProblem(
        422,
        "invalid_request",
        f"the request is not valid: unknown query parameter {unknown[0][:_LOCATION_PART_MAX]!r} (accepted: {accepted})",
        errors=errors[:ERRORS_MAX],
    )


class StrictJSONRoute(APIRoute):
    """Every route of the API: strict JSON bodies, and its caller's rate limit checked once every
    dependency (authentication among them) has run, just before the route's own code."""

    def __init__(self, path: str, endpoint: Callable[..., Any], **kwargs: Any) -> None:
        super().__init__(path, ratelimit.limited(endpoint), **kwargs)

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        known_query = _query_names(self.dependant)
        single_query = _single_query_names(self.dependant)
        if self.body_field is None:

            async def bodiless(request: Request) -> Response:
                refusal = _unknown_query(request, known_query, single_query)
                if refusal is not None:
                    raise refusal
                token = ratelimit.current_request.set(request)
                try:
                    return await handler(request)
                finally:
                    ratelimit.current_request.reset(token)

            return bodiless

        async def strict(request: Request) -> Response:
            refusal = _unknown_query(request, known_query, single_query)
            if refusal is not None:
                raise refusal
            strict_request = StrictJSONRequest(request.scope, request.receive)
            raw = await strict_request.body()
            if raw:
                if not _is_json(strict_request.headers.get("content-type")):
                    raise ApiProblem(
                        415,
                        "unsupported_media_type",
                        "the body must be JSON: send it with Content-Type: application/json",
                    )
                await strict_request.json()
            token = ratelimit.current_request.set(strict_request)
            try:
                return await handler(strict_request)
            finally:
                ratelimit.current_request.reset(token)

        return strict
