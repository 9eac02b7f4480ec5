"""What the domain routers share: who a request acts for, operations as the API shows them, 202 + Location.

A client key acts only for its own client: where a body names a client, the client's
own id is implied, and another client's id (or name) is answered exactly as one that
does not exist (404 `client_not_found`). Operations are the client's when its id is in
their payload (`client`; `from`/`to` of a payment; `buyer`/`seller` of a DvP).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any, TypeVar

from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from andchain.api.auth import Principal
from andchain.api.problems import ApiProblem, responses
from andchain.errors import DomainError, NotFound
from andchain.ops import Operation, OpStatus
from andchain.ops.core import HistoryEntry
from andchain.reconcile import operation_amounts
from andchain.tokens.model import Client
from andchain.tokens.service import TokenService

T = TypeVar("T")

CLIENT_REF_LENGTH_MAX = 200
NETWORK_LENGTH_MAX = 64
CLIENT_DESCRIPTION = (
    "the client's id (or its name); a client key acts for itself only and may leave it out, "
    "another client's is 404 client_not_found"
)
INTEGERS_NOTE = "integers are given as strings (minor units may exceed 2^53)"


def iso(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, tz=UTC).isoformat()


def plain(value: Any) -> Any:
    """JSON a browser reads exactly: every integer as a string (an amount of minor units may exceed 2^53)."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return str(value)
    if isinstance(value, dict):
        return {str(k): plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [plain(v) for v in value]
    return value


# ------------------------------------------------------------------ who acts


def own_client(principal: Principal) -> str | None:
    """The one client a client key acts for (lower case, like client ids), or None for the bank's roles."""
    own = principal.only_client()
    return None if own is None else own.lower()


def visible_client(principal: Principal, service: TokenService, ref: str) -> Client:
    """The client `ref` names, unless the caller is another client: then there is no such client."""
    client = service.clients.client(ref)
    own = own_client(principal)
    if own is not None and client.id != own:
        raise NotFound(f"no client {ref!r}", code="client_not_found")
    return client


def acting_client(principal: Principal, service: TokenService, ref: str | None, field: str = "client") -> str:
    """Who a request acts for: the client a bank role names, or a client key's own client."""
    own = own_client(principal)
    if own is None:
        if ref is None:
            message = "the bank's roles name the client"
            raise ApiProblem(
                422,
                "invalid_request",
                f"the request is not valid: body.{field}: {message}",
                errors=[{"location": f"body.{field}", "message": message}],
            )
        return ref
    return own if ref is None else visible_client(principal, service, ref).id


PAYEE_NOT_PAYABLE = "the payee cannot be paid: there is no active client by that reference"


def hidden_payee(principal: Principal, call: Callable[[], T]) -> T:
    """`call()`, except that for a client key a payee that cannot be paid (no such client, or not
    active) is one refusal that names nothing: another client's existence, status and name are not
    the caller's to learn. The bank's roles get the precise refusal."""
    try:
        return call()
    except DomainError as exc:
        if own_client(principal) is None or exc.details.get("field") != "payee":
            raise
        raise ApiProblem(422, "payee_not_payable", PAYEE_NOT_PAYABLE) from None


def operation_key(principal: Principal, kind: str, key: str) -> str:
    """The operation's own idempotency key: the caller's, scoped to its API key and the kind of request,
    so that two callers' keys (or one caller's key on two routes) never name the same operation. A long
    key is replaced by its digest, as transfer ids are (the operation key holds 255 characters)."""
    part = key if len(key) <= 128 else "key-sha256:" + hashlib.sha256(key.encode()).hexdigest()
    return f"api:{principal.key_id}:{kind}:{part}"


# ------------------------------------------------------------------ operations


def operation_clients(op: Operation) -> set[str]:
    """The clients an operation is about, from its payload."""
    p = op.payload
    names = (
        ["client"]
        + (["from", "to"] if op.kind in ("pay", "custody_transfer") else [])
        + (["buyer", "seller"] if op.kind == "dvp" else [])
    )
    return {str(p[n]).lower() for n in names if isinstance(p.get(n), str) and p[n] != "desk"}


def visible_operation(principal: Principal, op: Operation) -> Operation:
    own = own_client(principal)
    if own is not None and own not in operation_clients(op):
        raise NotFound(f"no operation {op.id!r}", code="operation_not_found")
    return op


class OperationError(BaseModel):
    code: str = Field(examples=["insufficient_funds"])
    message: str | None = None


class OperationOut(BaseModel):
    """An operation: an external side effect, recorded before anything was sent and advanced by workers."""

    id: str
    kind: str = Field(description="mint, pay, redeem, move, dvp, issue_shares, return_stray", examples=["mint"])
    status: OpStatus = Field(
        description="received, submitted, confirming: on its way; succeeded, failed, cancelled: "
        "final; needs_attention: stopped where an operator sees it, its holds kept"
    )
    network: str | None = Field(examples=["internal"])
    payload: dict[str, Any] = Field(
        description="what was asked, and what was derived when it was taken (holder addresses); " + INTEGERS_NOTE
    )
    amounts: dict[str, str] = Field(
        description="what it moves, per token symbol, in the token's units", examples=[{"USDD": "600.00"}]
    )
    result: dict[str, Any] | None = Field(description="what it did, once finished; " + INTEGERS_NOTE)
    error: OperationError | None
    attempts: int
    created_at: str
    updated_at: str


class HistoryOut(BaseModel):
    status: str
    detail: str
    at: str


class OperationDetailOut(OperationOut):
    history: list[HistoryOut] = Field(description="every status it went through, oldest first")


class OperationPage(BaseModel):
    data: list[OperationOut]
    next_cursor: str | None


def operation_view(op: Operation) -> dict[str, Any]:
    return {
        "id": op.id,
        "kind": op.kind,
        "status": op.status.value,
        "network": op.network,
        "payload": plain(op.payload),
        "amounts": operation_amounts(op.kind, op.payload),
        "result": plain(op.result),
        "error": None if op.error_code is None else {"code": op.error_code, "message": op.error_message},
        "attempts": op.attempts,
        "created_at": iso(op.created_at_us),
        "updated_at": iso(op.updated_at_us),
    }


def operation_detail(op: Operation, history: list[HistoryEntry]) -> dict[str, Any]:
    return {
        **operation_view(op),
        "history": [{"status": h.status, "detail": h.detail, "at": iso(h.at_us)} for h in history],
    }


def location(op_id: str) -> str:
    return f"/v1/operations/{op_id}"


def accepted(response: JSONResponse) -> JSONResponse:
    """An accepted request names where to follow its operation (the first answer and every replay of it)."""
    if response.status_code == 202:
        body = json.loads(bytes(response.body))
        response.headers["Location"] = location(body["id"])
    return response


def accepted_responses(refusals: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    """The OpenAPI responses of a value-moving POST: 202 with the operation and its Location."""
    documented = responses(
        {202: "accepted: the operation was recorded with what it reserves; follow it at Location"},
        refusals,
        post=True,
    )
    documented[202]["headers"] = {
        **documented[202].get("headers", {}),
        "Location": {"description": "/v1/operations/{id}: where to follow the operation", "schema": {"type": "string"}},
    }
    return documented
