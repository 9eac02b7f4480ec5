"""/v1/clients and /v1/deposits: clients, their deposit accounts, wallets and registered addresses.

Who may call:
- onboard, deposit: operator, admin;
- list, show, wallets: the bank's readers; a client sees itself only (another client is 404);
- status (suspend, re-activate): operator, admin, compliance;
- address challenge and registration: the client itself, operator, admin.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from andchain.api.auth import BANK_WRITERS, READERS, Principal, Role, allow
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import decode_id_cursor, encode_id_cursor, idempotency, token_service
from andchain.api.idempotency import IdempotencyStore, idempotency_key
from andchain.api.problems import responses
from andchain.api.routers.common import (
    CLIENT_REF_LENGTH_MAX,
    NETWORK_LENGTH_MAX,
    iso,
    own_client,
    visible_client,
)
from andchain.api.routers.ledger import AMOUNT_DESCRIPTION, AMOUNT_PATTERN, idempotent, scoped
from andchain.errors import NotFound
from andchain.money import format_minor, parse_minor
from andchain.tokens.model import DEPOSIT_TOKEN, TOKENS, Client, dda_account
from andchain.tokens.service import TokenService

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)

USD = TOKENS[DEPOSIT_TOKEN].decimals
CLIENT_PATH = "the client's id (or its name)"
_NO_CLIENT = {404: "client_not_found: no such client (another client's, for a client key)"}
_LIST_REFUSED = {
    400: "invalid_cursor: the cursor is not one this API returned",
    422: "invalid_request: a query parameter is out of range (limit is 1 to 1000)",
}


class OnboardIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200, examples=["Acme Corp"])
    kind: Literal["legal", "natural"] = Field(default="legal", description="a legal or a natural person")


class StatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    status: Literal["active", "suspended"] = Field(
        description="suspended: every new request for the client (deposit, mint, payment to or from it, "
        "redemption, move, DvP) is refused with client_not_active; what it asked before goes on"
    )


class DepositIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    client: str = Field(min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description=CLIENT_PATH)
    amount: str = Field(pattern=AMOUNT_PATTERN, description="USD: " + AMOUNT_DESCRIPTION, examples=["1000.00"])
    reference: str = Field(
        min_length=1,
        max_length=100,
        description="the credit notice's id (camt.054 NtryRef): the same notice books once",
        examples=["NTRY-2024-0001"],
    )
    memo: str = Field(default="", max_length=256)
    cash: bool = Field(
        default=False, description="currency paid in at a teller: counted by the cash monitoring rules (CTR)"
    )


class ChallengeIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    network: str = Field(min_length=1, max_length=NETWORK_LENGTH_MAX, description="a public network", examples=["base"])


class RegisterIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    network: str = Field(min_length=1, max_length=NETWORK_LENGTH_MAX, examples=["base"])
    nonce: str = Field(min_length=1, max_length=64, description="from the challenge")
    address: str = Field(min_length=1, max_length=64, description="the client's own address, 0x...")
    signature: str = Field(
        min_length=1, max_length=200, description="the challenge's message signed with EIP-191 (personal_sign), 0x..."
    )


class DdaOut(BaseModel):
    account: str = Field(examples=["clients:01j...:usd:dda"])
    posted: str = Field(description="USD", examples=["1000.00"])
    available: str = Field(description="USD: posted less what pending requests reserve", examples=["400.00"])


class ClientOut(BaseModel):
    id: str
    name: str
    kind: Literal["legal", "natural"]
    status: Literal["active", "suspended"]
    created_at: str
    dda: DdaOut


class ClientPage(BaseModel):
    data: list[ClientOut]
    next_cursor: str | None


class DepositOut(BaseModel):
    transfer_id: str = Field(description="deposit:<reference>")
    client: str
    amount: str
    dda: DdaOut


class WalletOut(BaseModel):
    network: str
    address: str
    allowlisted: bool = Field(description="allow-listed on the token (by the first operation that needs it)")


class AddressOut(BaseModel):
    network: str
    address: str
    status: Literal["verified", "blocked"]
    allowlisted: bool
    registered_at: str


class WalletsOut(BaseModel):
    client: str
    wallets: list[WalletOut] = Field(description="bank-managed addresses, one per permissioned network used so far")
    addresses: list[AddressOut] = Field(description="addresses the client registered on public networks")


class ChallengeOut(BaseModel):
    nonce: str
    message: str = Field(description="sign it with the key of the address to register (EIP-191 personal_sign)")
    expires_in_s: int


class RegisteredOut(BaseModel):
    client: str
    network: str
    address: str = Field(description="checksummed")
    status: Literal["verified"]


def _dda(service: TokenService, client_id: str) -> dict[str, Any]:
    account = service.ledger.account(dda_account(client_id))
    return {
        "account": account.name,
        "posted": format_minor(account.balance_posted, USD),
        "available": format_minor(account.available, USD),
    }


def client_view(service: TokenService, client: Client) -> dict[str, Any]:
    return {
        "id": client.id,
        "name": client.name,
        "kind": client.kind,
        "status": client.status,
        "created_at": iso(client.created_at_us),
        "dda": _dda(service, client.id),
    }


@router.post(
    "/clients",
    status_code=201,
    response_model=ClientOut,
    tags=["clients"],
    summary="Onboard a client and open its USD deposit account",
    openapi_extra=idempotent(),
    responses=responses(
        {201: "onboarded", 200: "already onboarded: a client by this name exists, of the same kind"},
        {
            409: "client_exists: a client by this name exists as another kind of person",
            422: "sanctions_hit: the name matches the sanctions list (an alert is opened)",
        },
        post=True,
        models={200: ClientOut},
    ),
)
def onboard(
    body: OnboardIn,
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        existed = any(c.name == body.name for c in _by_name(service, body.name))
        client = service.onboard(body.name, body.kind, by=f"api:{principal.key_id}")
        return (200 if existed else 201), client_view(service, client)

    return store.run(scoped(principal, "POST /v1/clients"), key, body.model_dump(mode="json"), handler)


def _by_name(service: TokenService, name: str) -> list[Client]:
    try:
        return [service.clients.client(name)]
    except NotFound:
        return []


@router.get(
    "/clients",
    response_model=ClientPage,
    tags=["clients"],
    summary="List clients with their deposit accounts",
    responses=responses({200: "a page of clients, oldest first (a client key: itself only)"}, _LIST_REFUSED),
)
def list_clients(
    principal: Principal = allow(READERS, Role.CLIENT),
    service: TokenService = Depends(token_service),
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    after = decode_id_cursor(cursor)
    own = own_client(principal)
    if own is not None:
        mine = [] if after is not None and after >= own else _by_id(service, own)
        return {"data": [client_view(service, c) for c in mine], "next_cursor": None}
    rows = service.clients.clients(after_id=after, limit=limit)
    return {
        "data": [client_view(service, c) for c in rows],
        "next_cursor": encode_id_cursor(rows[-1].id) if len(rows) == limit else None,
    }


def _by_id(service: TokenService, client_id: str) -> list[Client]:
    found = _by_name(service, client_id)
    return [c for c in found if c.id == client_id]


@router.get(
    "/clients/{client_id}",
    response_model=ClientOut,
    tags=["clients"],
    summary="A client and its deposit account",
    responses=responses({200: "the client"}, _NO_CLIENT),
)
def get_client(
    client_id: Annotated[str, PathParam(description=CLIENT_PATH)],
    principal: Principal = allow(READERS, Role.CLIENT),
    service: TokenService = Depends(token_service),
) -> dict[str, Any]:
    return client_view(service, visible_client(principal, service, client_id))


@router.post(
    "/clients/{client_id}/status",
    response_model=ClientOut,
    tags=["clients"],
    summary="Suspend a client, or make it active again",
    openapi_extra=idempotent(),
    responses=responses({200: "the client with its status (unchanged if it had it already)"}, _NO_CLIENT, post=True),
)
def set_status(
    client_id: Annotated[str, PathParam(description=CLIENT_PATH)],
    body: StatusIn,
    principal: Principal = allow(BANK_WRITERS, Role.COMPLIANCE),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        return 200, client_view(service, service.clients.set_status(client_id, body.status))

    payload = {"client": client_id, **body.model_dump(mode="json")}
    return store.run(scoped(principal, "POST /v1/clients/{client_id}/status"), key, payload, handler)


@router.post(
    "/deposits",
    status_code=201,
    response_model=DepositOut,
    tags=["clients"],
    summary="Credit a client's deposit account (an operator deposit or a camt.054 credit notice)",
    openapi_extra=idempotent(),
    responses=responses(
        {201: "booked (or already booked under this reference, with the same amount)"},
        {
            **_NO_CLIENT,
            422: "client_not_active, amount_must_be_positive, excess_precision; the reference was booked with "
            "another amount (exists_with_different_fields)",
        },
        post=True,
    ),
)
def deposit(
    body: DepositIn,
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        amount_minor = parse_minor(body.amount, USD)
        transfer_id = service.deposit(body.client, amount_minor, body.reference, body.memo, cash=body.cash)
        client = service.client(body.client)
        return 201, {
            "transfer_id": transfer_id,
            "client": client.id,
            "amount": format_minor(amount_minor, USD),
            "dda": _dda(service, client.id),
        }

    return store.run(scoped(principal, "POST /v1/deposits"), key, body.model_dump(mode="json"), handler)


@router.get(
    "/clients/{client_id}/wallets",
    response_model=WalletsOut,
    tags=["clients"],
    summary="A client's bank-managed wallets and the addresses it registered",
    responses=responses({200: "the client's wallets and addresses"}, _NO_CLIENT),
)
def wallets(
    client_id: Annotated[str, PathParam(description=CLIENT_PATH)],
    principal: Principal = allow(READERS, Role.CLIENT),
    service: TokenService = Depends(token_service),
) -> dict[str, Any]:
    client = visible_client(principal, service, client_id)
    return {
        "client": client.id,
        "wallets": [
            {"network": w.network, "address": w.address, "allowlisted": w.allowlisted}
            for w in service.clients.wallets(client.id)
        ],
        "addresses": [
            {
                "network": a.network,
                "address": a.address,
                "status": a.status,
                "allowlisted": a.allowlisted,
                "registered_at": iso(a.registered_at_us),
            }
            for a in service.clients.addresses(client.id)
        ],
    }


@router.post(
    "/clients/{client_id}/addresses/challenge",
    status_code=201,
    response_model=ChallengeOut,
    tags=["clients"],
    summary="A message to sign (EIP-191) with the key of a public-network address the client registers",
    openapi_extra=idempotent(),
    responses=responses(
        {201: "the challenge, valid for expires_in_s"},
        {404: _NO_CLIENT[404] + "; unknown_network", 422: "not_a_public_network"},
        post=True,
    ),
)
def challenge(
    client_id: Annotated[str, PathParam(description=CLIENT_PATH)],
    body: ChallengeIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        client = visible_client(principal, service, client_id)
        nonce, message = service.clients.challenge(client.id, body.network)
        ttl_s = service.ctx.settings.compliance.challenge_ttl_s
        return 201, {"nonce": nonce, "message": message, "expires_in_s": ttl_s}

    payload = {"client": client_id, **body.model_dump(mode="json")}
    return store.run(scoped(principal, "POST /v1/clients/{client_id}/addresses/challenge"), key, payload, handler)


@router.post(
    "/clients/{client_id}/addresses",
    status_code=201,
    response_model=RegisteredOut,
    tags=["clients"],
    summary="Register a client-owned address on a public network with its signed challenge",
    openapi_extra=idempotent(),
    responses=responses(
        {201: "verified and recorded; it is allow-listed by its first operation"},
        {
            404: _NO_CLIENT[404] + "; challenge_not_found (for this client and network)",
            409: "challenge_used; address_taken: registered to another client",
            422: "invalid_address, invalid_signature, challenge_expired, sanctions_hit (a listed address)",
        },
        post=True,
    ),
)
def register_address(
    client_id: Annotated[str, PathParam(description=CLIENT_PATH)],
    body: RegisterIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        client = visible_client(principal, service, client_id)
        address = service.clients.register(client.id, body.network, body.nonce, body.address, body.signature)
        return 201, {"client": client.id, "network": body.network, "address": address, "status": "verified"}

    payload = {"client": client_id, **body.model_dump(mode="json")}
    return store.run(scoped(principal, "POST /v1/clients/{client_id}/addresses"), key, payload, handler)
