"""/v1/custody and /v1/stablecoin: accounts at custodians, deposit addresses, positions, withdrawals,
internal transfers, stablecoin conversions, and the custodians' webhooks.

Withdrawals, internal transfers and conversions are operations: the answer is `202` with the
operation and `Location: /v1/operations/{id}`; the worker sends the request to the custodian
under a key derived from the operation and books it when the custodian completes it.

Who may call:
- custodians: everyone with a key;
- accounts (open), deposit addresses, withdrawals, conversions: operator, admin, and a client for
  itself (never for the desk);
- accounts (list), positions: the bank's readers, and a client for itself;
- internal transfers: operator, admin;
- webhooks: no API key: each custodian's signature is the credential (a bad one answers 401).
"""

from __future__ import annotations

import threading
from dataclasses import asdict
from typing import Any

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from andchain.api.auth import BANK_WRITERS, READERS, Principal, Role, allow
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import context, idempotency, token_service
from andchain.api.idempotency import IdempotencyStore, idempotency_key
from andchain.api.problems import ApiProblem, responses
from andchain.api.routers.common import (
    CLIENT_DESCRIPTION,
    CLIENT_REF_LENGTH_MAX,
    NETWORK_LENGTH_MAX,
    OperationOut,
    accepted,
    accepted_responses,
    operation_key,
    operation_view,
    own_client,
)
from andchain.api.routers.ledger import AMOUNT_DESCRIPTION, AMOUNT_PATTERN, idempotent, scoped
from andchain.custody.port import DESK
from andchain.custody.service import CustodyService
from andchain.errors import NotFound
from andchain.money import parse_minor
from andchain.tokens.service import TokenService

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)
_lock = threading.Lock()

CUSTODIAN_FIELD = Field(default="reference", min_length=1, max_length=64, examples=["reference"])
ASSET_FIELD = Field(min_length=1, max_length=16, pattern=r"^[A-Z][A-Z0-9]{0,15}$", examples=["USDC"])
OWNER_DESCRIPTION = CLIENT_DESCRIPTION + '; or "desk" (the bank\'s roles only)'

_REFUSED = {
    404: "client_not_found (also another client's, for a client key), custodian_not_found",
    422: (
        "a refusal with its stable code: insufficient_funds, custody_account_missing, "
        "address_not_registered, address_not_allowed, network_not_allowed, asset_not_supported, unknown_asset, "
        "excess_precision, conversion_not_supported, client_not_active, ..."
    ),
    503: "custodian_unavailable: the custodian did not answer a call this request needs; nothing was recorded",
}


def custody_service(request: Request, tokens: TokenService = Depends(token_service)) -> CustodyService:
    state = request.app.state
    service: CustodyService | None = getattr(state, "custody", None)
    if service is None:
        with _lock:
            service = getattr(state, "custody", None)
            if service is None:
                service = CustodyService(context(request), tokens=tokens)
                state.custody = service
    return service


def _owner(principal: Principal, service: CustodyService, ref: str | None, field: str = "client") -> str:
    """Whom a request acts for: a client key its own client (never the desk), a bank role whom it names."""
    own = own_client(principal)
    if own is not None:
        if ref is None:
            return own
        if ref == DESK:
            raise NotFound(f"no client {ref!r}", code="client_not_found")
        client = service.clients.client(ref)
        if client.id != own:
            raise NotFound(f"no client {ref!r}", code="client_not_found")
        return client.id
    if ref is None:
        message = "the bank's roles name the client (or desk)"
        raise ApiProblem(
            422,
            "invalid_request",
            f"the request is not valid: body.{field}: {message}",
            errors=[{"location": f"body.{field}", "message": message}],
        )
    return ref if ref == DESK else service.clients.client(ref).id


def _visible_owner(principal: Principal, service: CustodyService, ref: str | None) -> str | None:
    """A filter on an owner: a client key sees only its own."""
    own = own_client(principal)
    if own is None:
        return None if ref is None else (ref if ref == DESK else service.clients.client(ref).id)
    return _owner(principal, service, ref)


def _run(store: IdempotencyStore, principal: Principal, route: str, key: str, body: BaseModel, call: Any) -> Any:
    return store.run(scoped(principal, f"POST /v1/{route}"), key, body.model_dump(mode="json"), call)


def _accept(store: IdempotencyStore, principal: Principal, route: str, key: str, body: BaseModel, call: Any) -> Any:
    return accepted(_run(store, principal, route, key, body, lambda: (202, operation_view(call()))))


class OwnerIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    custodian: str = CUSTODIAN_FIELD
    owner: str | None = Field(
        default=None, min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description=OWNER_DESCRIPTION
    )


class DepositAddressIn(OwnerIn):
    asset: str = ASSET_FIELD
    network: str = Field(min_length=1, max_length=NETWORK_LENGTH_MAX, examples=["base"])


class WithdrawalIn(DepositAddressIn):
    amount: str = Field(pattern=AMOUNT_PATTERN, description="in the asset's units: " + AMOUNT_DESCRIPTION)
    address: str = Field(
        min_length=1, max_length=128, description="the destination: a client's registered, verified address"
    )
    travel_rule: dict[str, Any] | None = Field(
        default=None,
        description=(
            "IVMS101 originator and beneficiary data (a beneficiary at another institution); from the travel "
            "rule's threshold, a withdrawal without it carries the client on both sides (docs/compliance.md)"
        ),
    )


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    custodian: str = CUSTODIAN_FIELD
    source: str = Field(min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description=OWNER_DESCRIPTION)
    destination: str = Field(min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description=OWNER_DESCRIPTION)
    asset: str = ASSET_FIELD
    network: str = Field(min_length=1, max_length=NETWORK_LENGTH_MAX, examples=["base"])
    amount: str = Field(pattern=AMOUNT_PATTERN, description="in the asset's units: " + AMOUNT_DESCRIPTION)


class ConversionIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    client: str | None = Field(
        default=None, min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description=CLIENT_DESCRIPTION
    )
    amount: str = Field(pattern=AMOUNT_PATTERN, description="in the `from` asset's units: " + AMOUNT_DESCRIPTION)
    from_asset: str = Field(alias="from", min_length=1, max_length=16, examples=["USDC"])
    to_asset: str = Field(alias="to", min_length=1, max_length=16, examples=["USD"])
    network: str | None = Field(default=None, min_length=1, max_length=NETWORK_LENGTH_MAX, examples=["base"])
    custodian: str | None = Field(default=None, min_length=1, max_length=64)


class AccountOut(BaseModel):
    custodian: str
    owner: str
    account_id: str
    name: str
    created_at_us: int


class DepositAddressOut(BaseModel):
    custodian: str
    account_id: str
    asset: str
    network: str
    address: str
    tag: str | None = None


class CustodianOut(BaseModel):
    name: str
    kind: str = Field(examples=["reference"])


class CustodiansOut(BaseModel):
    data: list[CustodianOut]


class AccountsOut(BaseModel):
    data: list[AccountOut]


class WebhookOut(BaseModel):
    event: str = Field(description="the custodian's id of the notification")
    duplicate: bool = Field(description="true when this notification was taken in before (nothing changed)")
    outcome: str | None = Field(
        default=None, description="operation (it advanced one), deposit (it credited one), recorded (noted only)"
    )


class PositionOut(BaseModel):
    custodian: str
    owner: str
    asset: str
    account: str = Field(description="the ledger account")
    balance: str
    available: str = Field(description="the balance less what operations hold")
    pending_out: str
    pending_in: str


class PositionsOut(BaseModel):
    data: list[PositionOut]


@router.get(
    "/custody/custodians",
    response_model=CustodiansOut,
    tags=["custody"],
    summary="The custodians the bank is configured to reach",
    responses=responses({200: "the configured custodians"}),
)
def custodians(
    principal: Principal = allow(READERS, Role.CLIENT), service: CustodyService = Depends(custody_service)
) -> Any:
    configured = service.settings.custodians
    return {
        "data": [
            {"name": name, "kind": configured[name].kind if name in configured else "injected"}
            for name in service.names()
        ]
    }


@router.post(
    "/custody/accounts",
    response_model=AccountOut,
    tags=["custody"],
    summary="Open the owner's account at a custodian (once; again, the same account)",
    openapi_extra=idempotent(),
    responses=responses({200: "the account"}, _REFUSED, post=True),
)
def open_account(
    body: OwnerIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: CustodyService = Depends(custody_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def call() -> tuple[int, dict[str, Any]]:
        return 200, asdict(service.open_account(body.custodian, _owner(principal, service, body.owner, "owner")))

    return _run(store, principal, "custody/accounts", key, body, call)


@router.get(
    "/custody/accounts",
    response_model=AccountsOut,
    tags=["custody"],
    summary="The accounts the bank opened at its custodians",
    responses=responses({200: "the accounts"}, {404: "client_not_found (also another client's, for a client key)"}),
)
def list_accounts(
    custodian: str | None = Query(None, max_length=64),
    owner: str | None = Query(None, max_length=CLIENT_REF_LENGTH_MAX, description=OWNER_DESCRIPTION),
    principal: Principal = allow(READERS, Role.CLIENT),
    service: CustodyService = Depends(custody_service),
) -> Any:
    return {"data": [asdict(a) for a in service.accounts(custodian, _visible_owner(principal, service, owner))]}


@router.post(
    "/custody/deposit-addresses",
    response_model=DepositAddressOut,
    tags=["custody"],
    summary="Where the owner's account receives an asset on a network (opened if need be)",
    openapi_extra=idempotent(),
    responses=responses({200: "the address"}, _REFUSED, post=True),
)
def deposit_address(
    body: DepositAddressIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: CustodyService = Depends(custody_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def call() -> tuple[int, dict[str, Any]]:
        owner = _owner(principal, service, body.owner, "owner")
        return 200, asdict(service.deposit_address(body.custodian, owner, body.asset, body.network))

    return _run(store, principal, "custody/deposit-addresses", key, body, call)


@router.get(
    "/custody/positions",
    response_model=PositionsOut,
    tags=["custody"],
    summary="What the ledger holds for each owner at each custodian",
    responses=responses({200: "the positions"}, {404: "client_not_found (also another client's, for a client key)"}),
)
def positions(
    custodian: str | None = Query(None, max_length=64),
    owner: str | None = Query(None, max_length=CLIENT_REF_LENGTH_MAX, description=OWNER_DESCRIPTION),
    principal: Principal = allow(READERS, Role.CLIENT),
    service: CustodyService = Depends(custody_service),
) -> Any:
    return {"data": [p.view() for p in service.positions(_visible_owner(principal, service, owner), custodian)]}


@router.post(
    "/custody/withdrawals",
    status_code=202,
    response_model=OperationOut,
    tags=["custody"],
    summary="Withdraw from the owner's account at a custodian to an external address",
    openapi_extra=idempotent(),
    responses=accepted_responses(_REFUSED),
)
def withdraw(
    body: WithdrawalIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: CustodyService = Depends(custody_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """The amount is held in the owner's position at once, sent by the worker under a key derived from
    the operation, posted when the custodian completes the transfer and released if it fails or its
    approval is rejected. IVMS101 data goes with it above the travel-rule threshold."""

    def call() -> Any:
        owner = _owner(principal, service, body.owner, "owner")
        return service.withdraw(
            body.custodian,
            owner,
            body.asset,
            body.network,
            parse_minor(body.amount, service.scale(body.asset)),
            body.address,
            operation_key(principal, "custody_withdrawal", key),
            travel_rule=body.travel_rule,
        )

    return _accept(store, principal, "custody/withdrawals", key, body, call)


@router.post(
    "/custody/transfers",
    status_code=202,
    response_model=OperationOut,
    tags=["custody"],
    summary="Move value between two accounts at the same custodian (a client and the desk)",
    openapi_extra=idempotent(),
    responses=accepted_responses(_REFUSED),
)
def transfer(
    body: TransferIn,
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    service: CustodyService = Depends(custody_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def call() -> Any:
        return service.transfer(
            body.custodian,
            body.source,
            body.destination,
            body.asset,
            body.network,
            parse_minor(body.amount, service.scale(body.asset)),
            operation_key(principal, "custody_transfer", key),
        )

    return _accept(store, principal, "custody/transfers", key, body, call)


@router.post(
    "/stablecoin/conversions",
    status_code=202,
    response_model=OperationOut,
    tags=["custody"],
    summary="Convert a client's USDC into USD deposits 1:1, or USD deposits into USDC delivered to its address",
    openapi_extra=idempotent(),
    responses=accepted_responses(_REFUSED),
)
def convert(
    body: ConversionIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: CustodyService = Depends(custody_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """USDC to USD: the client's coins move to the desk's account at the custodian; when it completes,
    the client's deposit account is credited. USD to USDC: the deposits are held, the desk's coins
    withdrawn to the client's registered address; both booked when the custodian completes it."""

    def call() -> Any:
        client = _owner(principal, service, body.client)
        if client == DESK:
            raise NotFound("no client 'desk'", code="client_not_found")
        return service.convert(
            client,
            parse_minor(body.amount, service.scale(body.from_asset.upper())),
            body.from_asset,
            body.to_asset,
            operation_key(principal, "stablecoin_convert", key),
            network=body.network,
            custodian=body.custodian,
        )

    return _accept(store, principal, "stablecoin/conversions", key, body, call)


@router.post(
    "/custody/webhooks/{custodian}",
    response_model=WebhookOut,
    tags=["custody"],
    summary="A custodian's signed notification (its signature is the credential)",
    responses=responses(
        {200: "taken in (or a duplicate of one taken in before)"},
        {
            401: "webhook_rejected: the signature, its timestamp or the body does not verify",
            404: "custodian_not_found",
            422: "webhook_unreadable: signed, but not what the custodian documents",
        },
        authenticated=False,
    ),
)
async def webhook(
    request: Request,
    custodian: str = PathParam(min_length=1, max_length=64),
    service: CustodyService = Depends(custody_service),
) -> Any:
    body = await request.body()
    headers = {k.lower(): v for k, v in request.headers.items()}
    return await run_in_threadpool(service.webhook, custodian, headers, body)
