"""/v1/operations: every external side effect, with its status history; retry and cancel.

Who may call: the bank's readers list and read every operation; a client only those about
it (its id in the payload: `client`, `from`/`to` of a payment, `buyer`/`seller` of a DvP),
another's is 404. Retry and cancel: operator and admin.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from andchain.api.auth import BANK_WRITERS, READERS, Principal, Role, allow
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import decode_id_cursor, encode_id_cursor, idempotency, token_service
from andchain.api.idempotency import IdempotencyStore, idempotency_key
from andchain.api.problems import responses
from andchain.api.routers.common import (
    OperationDetailOut,
    OperationOut,
    OperationPage,
    operation_clients,
    operation_detail,
    operation_view,
    own_client,
    visible_operation,
)
from andchain.api.routers.ledger import idempotent, scoped
from andchain.ops import Operation, OpStatus
from andchain.ops.core import PAGE_MAX, UNFINISHED
from andchain.tokens.service import TokenService
from andchain.trading.runtime import platform_worker

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)

# A client's list is filtered from the bank's: one request reads at most this many operations
# looking for the client's; when it stops short, next_cursor goes on from where it stopped.
CLIENT_SCAN_MAX = 10 * PAGE_MAX
_NO_OPERATION = {404: "operation_not_found: no such operation (another client's, for a client key)"}
OP_ID = "the operation's id"


class CancelIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    reason: str = Field(default="cancelled by operator", min_length=1, max_length=500)


def _scan_for_client(
    service: TokenService, own: str, statuses: list[str] | None, kind: str | None, after: str | None, limit: int
) -> tuple[list[Operation], str | None]:
    """The client's operations after `after`, and the cursor to go on from (None: nothing more)."""
    found: list[Operation] = []
    scanned = 0
    last = after
    while scanned < CLIENT_SCAN_MAX:
        page = service.ops.list(status=statuses, kind=kind, limit=PAGE_MAX, after_id=last)
        for op in page:
            scanned += 1
            last = op.id
            if own in operation_clients(op):
                found.append(op)
                if len(found) == limit:
                    return found, last
        if len(page) < PAGE_MAX:
            return found, None
    return found, last


@router.get(
    "/operations",
    response_model=OperationPage,
    tags=["operations"],
    summary="List operations, oldest first",
    responses=responses(
        {
            200: "a page of operations (a client key: those about its client; a page may then hold fewer than limit "
            "while next_cursor is not null)"
        },
        {
            400: "invalid_cursor: the cursor is not one this API returned",
            422: "invalid_request: a query parameter is out of range (status, limit 1 to 1000)",
        },
    ),
)
def list_operations(
    principal: Principal = allow(READERS, Role.CLIENT),
    service: TokenService = Depends(token_service),
    status: OpStatus | None = None,
    unfinished: bool = Query(False, description="only those not finished (active or needs_attention)"),
    kind: Annotated[str | None, Query(max_length=32, description="mint, pay, redeem, move, dvp, ...")] = None,
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    after = decode_id_cursor(cursor)
    statuses = [s.value for s in UNFINISHED] if unfinished else None
    if status is not None:
        statuses = [status.value] if statuses is None or status.value in statuses else []
    if statuses == []:  # finished and unfinished at once: nothing is both
        return {"data": [], "next_cursor": None}
    own = own_client(principal)
    if own is None:
        rows = service.ops.list(status=statuses, kind=kind, limit=limit, after_id=after)
        next_id = rows[-1].id if len(rows) == limit else None
    else:
        rows, next_id = _scan_for_client(service, own, statuses, kind, after, limit)
    return {
        "data": [operation_view(op) for op in rows],
        "next_cursor": None if next_id is None else encode_id_cursor(next_id),
    }


@router.get(
    "/operations/{op_id}",
    response_model=OperationDetailOut,
    tags=["operations"],
    summary="An operation and its status history",
    responses=responses({200: "the operation"}, _NO_OPERATION),
)
def get_operation(
    op_id: Annotated[str, PathParam(description=OP_ID)],
    principal: Principal = allow(READERS, Role.CLIENT),
    service: TokenService = Depends(token_service),
) -> dict[str, Any]:
    op = visible_operation(principal, service.ops.get(op_id))
    return operation_detail(op, service.ops.history(op.id))


@router.post(
    "/operations/{op_id}/retry",
    response_model=OperationOut,
    tags=["operations"],
    summary="Ask for another attempt now; one in needs_attention resumes with a fresh retry budget",
    openapi_extra=idempotent(),
    responses=responses(
        {200: "the operation, due now"},
        {
            **_NO_OPERATION,
            409: "operation_terminal: it is finished; operation_changed: it kept changing, try again",
        },
        post=True,
    ),
)
def retry_operation(
    op_id: Annotated[str, PathParam(description=OP_ID)],
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    return store.run(
        scoped(principal, "POST /v1/operations/{op_id}/retry"),
        key,
        {"operation": op_id},
        lambda: (200, operation_view(service.ops.retry(op_id))),
    )


@router.post(
    "/operations/{op_id}/cancel",
    response_model=OperationOut,
    tags=["operations"],
    summary="Cancel an operation that has sent nothing, releasing what it reserved",
    openapi_extra=idempotent(),
    responses=responses(
        {200: "the cancelled operation"},
        {
            **_NO_OPERATION,
            409: "operation_terminal: it is finished; operation_in_flight: it has sent a transaction (let it "
            "finish, or retry it); operation_changed: a worker changed it meanwhile, try again",
        },
        post=True,
    ),
)
def cancel_operation(
    op_id: Annotated[str, PathParam(description=OP_ID)],
    body: CancelIn | None = None,
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """The check that nothing was sent, the cancellation and the release of the holds commit together."""
    reason = (body or CancelIn()).reason

    def handler() -> tuple[int, dict[str, Any]]:
        return 200, operation_view(platform_worker(service.ctx, service).cancel(op_id, reason))

    return store.run(
        scoped(principal, "POST /v1/operations/{op_id}/cancel"), key, {"operation": op_id, "reason": reason}, handler
    )
