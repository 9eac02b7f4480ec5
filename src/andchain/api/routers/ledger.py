"""/v1/accounts and /v1/transfers: the ledger over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field, field_validator
from sqlalchemy import Connection

from andchain.api import refs
from andchain.api.auth import BANK_WRITERS, READERS, Principal, Role, allow
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import context, decode_cursor, encode_cursor, idempotency
from andchain.api.idempotency import IdempotencyStore, default_transfer_id, idempotency_key, openapi_parameter
from andchain.api.problems import ERRORS_MAX, ApiProblem, responses
from andchain.context import Context
from andchain.errors import DomainError, NotFound
from andchain.ledger import (
    BATCH_SIZE_MAX,
    Account,
    AccountFlags,
    AccountSpec,
    CreateResult,
    Result,
    Transfer,
    TransferFlags,
    TransferSpec,
)
from andchain.ledger.core import account_not_found
from andchain.ledger.model import ID_LENGTH_MAX
from andchain.ledger.rules import SEIZE_CODE
from andchain.money import format_minor, parse_minor

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)

# ASCII digits only: pydantic's regex engine, like Python's, lets \d match every Unicode
# digit (Arabic-Indic, full-width...), which int() would then have parsed.
AMOUNT_PATTERN = r"^[0-9]{1,40}(\.[0-9]{1,36})?$"
AMOUNT_DESCRIPTION = "a decimal string of ASCII digits in the asset's units, e.g. '12.34'; never a JSON number"
ACCOUNT_REF_DESCRIPTION = (
    "the account: a JSON integer is its id, a string its name, except the explicit form 'id:42' (id 42)"
)
PATH_REF_DESCRIPTION = "the account's name, or 'id:42' for the account whose id is 42"
TRANSFER_ID_DESCRIPTION = f"the transfer's id (at most {ID_LENGTH_MAX} characters)"


def idempotent() -> dict[str, Any]:
    """OpenAPI for every POST: the Idempotency-Key header is required (checked by `idempotency_key`)."""
    return {"parameters": [openapi_parameter()]}


# Which HTTP status each refusal gets; anything else about the content is 422.
_STATUS = {
    Result.EXISTS_WITH_DIFFERENT_FIELDS: 409,
    Result.PENDING_TRANSFER_NOT_FOUND: 404,
}


def scoped(principal: Principal, route: str) -> str:
    """Idempotency keys are scoped per API key: two callers' keys never collide."""
    return f"{principal.key_id} {route}"


def client_prefix(client_id: str) -> str:
    """The names of a client's own ledger accounts begin with this."""
    return f"clients:{client_id.lower()}:"


def visible_account(ctx: Context, principal: Principal, ref: str) -> Account:
    """The account a path names, unless the caller is a client and it is another's: then there is
    no such account, refused in the very words of one that does not exist."""
    parsed = refs.parse(ref)
    account = refs.account(ctx, parsed)
    own = principal.only_client()
    if own is not None and not account.name.startswith(client_prefix(own)):
        raise account_not_found(parsed)
    return account


def _iso(us: int | None) -> str | None:
    return None if us is None else datetime.fromtimestamp(us / 1_000_000, tz=UTC).isoformat()


def account_view(account: Account, scale: int) -> dict[str, Any]:
    def amt(v: int) -> str:
        return format_minor(v, scale)

    return {
        "id": account.id,
        "name": account.name,
        "asset": account.asset,
        "kind": account.kind,
        "flags": {
            "debits_must_not_exceed_credits": bool(account.flags & AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS),
            "credits_must_not_exceed_debits": bool(account.flags & AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS),
        },
        "metadata": account.metadata or {},
        "closed": account.closed,
        "created_at": _iso(account.created_at_us),
        "balances": {
            "debits_pending": amt(account.debits_pending),
            "debits_posted": amt(account.debits_posted),
            "credits_pending": amt(account.credits_pending),
            "credits_posted": amt(account.credits_posted),
            "posted": format_minor(account.balance_posted, scale),
            "available": format_minor(account.available, scale),
        },
    }


def transfer_view(transfer: Transfer, scale: int) -> dict[str, Any]:
    kind = "single"
    if transfer.flags & TransferFlags.PENDING:
        kind = "pending"
    elif transfer.flags & TransferFlags.POST_PENDING:
        kind = "post_pending"
    elif transfer.flags & TransferFlags.VOID_PENDING:
        kind = "void_pending"
    return {
        "id": transfer.id,
        "type": kind,
        "debit_account_id": transfer.debit_account_id,
        "credit_account_id": transfer.credit_account_id,
        "amount": format_minor(transfer.amount, scale),
        "amount_minor": str(transfer.amount),
        "asset": transfer.asset,
        "code": transfer.code,
        "memo": transfer.memo,
        "metadata": transfer.metadata or {},
        "linked": bool(transfer.flags & TransferFlags.LINKED),
        "pending_id": transfer.pending_id,
        "timeout_s": transfer.timeout_s,
        "pending_status": transfer.pending_status,
        "expires_at": _iso(transfer.expires_at_us),
        "created_at": _iso(transfer.created_at_us),
    }


class AccountIn(BaseModel):
    # strict: no "yes" or 1 for a boolean, no number for a string.
    model_config = ConfigDict(extra="forbid", strict=True)

    name: str = Field(min_length=1, max_length=200, examples=["clients:acme:usd:dda"])
    asset: str = Field(min_length=1, max_length=16, examples=["USD"])
    kind: Literal["asset", "liability", "equity", "income", "expense"] = "asset"
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    metadata: dict[str, Any] | None = None


class TransferIn(BaseModel):
    # strict: an account is never `true`, a flag never "yes" or 1, an amount never a number.
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=ID_LENGTH_MAX,
        description="defaults to one derived from the Idempotency-Key (see docs/api.md)",
    )
    debit_account: int | str = Field(description=ACCOUNT_REF_DESCRIPTION)
    credit_account: int | str = Field(description=ACCOUNT_REF_DESCRIPTION)
    amount: str = Field(pattern=AMOUNT_PATTERN, description=AMOUNT_DESCRIPTION)
    asset: str = Field(min_length=1, max_length=16)
    code: str = Field(
        default="",
        max_length=64,
        description="a reason code; `seize` is reserved for seizures on a lawful order (POST /v1/compliance/orders)",
    )
    memo: str = Field(default="", max_length=256)
    metadata: dict[str, Any] | None = None
    pending: bool = False
    timeout_s: int = Field(default=0, ge=0, le=10 * 365 * 86400)
    linked: bool = Field(default=False, description="batch only: linked to the next transfer")

    @field_validator("code")
    @classmethod
    def _not_reserved(cls, value: str) -> str:
        if value == SEIZE_CODE:
            raise ValueError("the code 'seize' is reserved for seizures on a lawful order (POST /v1/compliance/orders)")
        return value


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    transfers: list[TransferIn] = Field(min_length=1, max_length=BATCH_SIZE_MAX)


class SecondPhaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=ID_LENGTH_MAX,
        description="defaults to one derived from the Idempotency-Key (see docs/api.md)",
    )
    amount: str | None = Field(
        default=None, pattern=AMOUNT_PATTERN, description="post only: the part to post; " + AMOUNT_DESCRIPTION
    )
    memo: str = Field(default="", max_length=256)


class AccountFlagsOut(BaseModel):
    debits_must_not_exceed_credits: bool
    credits_must_not_exceed_debits: bool


class BalancesOut(BaseModel):
    """In the account's asset units."""

    debits_pending: str
    debits_posted: str
    credits_pending: str
    credits_posted: str
    posted: str = Field(description="the balance on the account's normal side, posted transfers only")
    available: str = Field(description="posted, less what pending transfers hold")


class AccountOut(BaseModel):
    id: int
    name: str
    asset: str
    kind: Literal["asset", "liability", "equity", "income", "expense"]
    flags: AccountFlagsOut
    metadata: dict[str, Any]
    closed: bool
    created_at: str | None
    balances: BalancesOut


class AccountPage(BaseModel):
    data: list[AccountOut]
    next_cursor: str | None


class TransferOut(BaseModel):
    id: str
    type: Literal["single", "pending", "post_pending", "void_pending"]
    debit_account_id: int
    credit_account_id: int
    amount: str = Field(description="in the asset's units")
    amount_minor: str = Field(description="in minor units, as a string: it may exceed 2^53")
    asset: str
    code: str
    memo: str
    metadata: dict[str, Any]
    linked: bool
    pending_id: str | None
    timeout_s: int
    pending_status: str | None = Field(description="a pending transfer's state: pending, posted, voided, expired")
    expires_at: str | None
    created_at: str | None


class TransferPage(BaseModel):
    data: list[TransferOut]
    next_cursor: str | None


class BatchResultOut(BaseModel):
    index: int
    id: str
    result: str = Field(description="ok, exists, or the refusal's code")


class BatchOut(BaseModel):
    results: list[BatchResultOut]


def _scale(ctx: Context, asset: str) -> int:
    return ctx.assets.get(asset).scale


def _spec(
    ctx: Context, body: TransferIn, default_id: str, known: dict[tuple[str, int | str], int] | None = None
) -> TransferSpec:
    """A transfer's spec; `known` remembers the account references a batch has resolved already."""
    scale = _scale(ctx, body.asset)
    flags = (TransferFlags.PENDING if body.pending else 0) | (TransferFlags.LINKED if body.linked else 0)

    def resolve(ref: int | str, field: str) -> int:
        if known is None:
            return refs.account_id(ctx, ref, field)
        cache_key = (field, ref)
        if cache_key not in known:
            known[cache_key] = refs.account_id(ctx, ref, field)
        return known[cache_key]

    return TransferSpec(
        id=body.id or default_id,
        debit_account_id=resolve(body.debit_account, "debit_account"),
        credit_account_id=resolve(body.credit_account, "credit_account"),
        amount=parse_minor(body.amount, scale),
        asset=body.asset.upper(),
        flags=int(flags),
        timeout_s=body.timeout_s,
        code=body.code,
        memo=body.memo,
        metadata=body.metadata,
    )


def _refusal(result: CreateResult) -> ApiProblem:
    return ApiProblem(
        _STATUS.get(result.result, 422),
        result.result.value,
        f"transfer {result.id!r} was refused: {result.result.value.replace('_', ' ')}",
    )


def _single(ctx: Context, spec: TransferSpec, conn: Connection) -> tuple[int, dict[str, Any]]:
    result = ctx.ledger.create_transfer(spec, conn=conn)
    if not result.ok:
        raise _refusal(result)
    transfer = ctx.ledger.transfer(result.id, conn=conn)
    return (201 if result.result == Result.OK else 200), transfer_view(transfer, _scale(ctx, transfer.asset))


def _transfer_id(transfer_id: str) -> str:
    """A transfer id from a path: one longer than any id can be is simply not found."""
    if len(transfer_id) > ID_LENGTH_MAX:
        raise NotFound(
            f"no transfer with that id (ids are at most {ID_LENGTH_MAX} characters, was {len(transfer_id)})",
            code="transfer_not_found",
        )
    return transfer_id


_TRANSFER_CREATED = {
    201: "booked: the transfer was created",
    200: "already booked: a transfer with this id and the same fields exists (nothing was booked again)",
}
_TRANSFER_REFUSED = {
    409: "exists_with_different_fields: a transfer with this id exists with other fields",
    422: (
        "a refusal with the ledger's stable code (insufficient_funds, asset_mismatch, account_not_found, "
        "unknown_asset, excess_precision, invalid_amount, ...)"
    ),
}


@router.post(
    "/accounts",
    status_code=201,
    response_model=AccountOut,
    tags=["ledger"],
    summary="Open an account",
    openapi_extra=idempotent(),
    responses=responses(
        {201: "opened", 200: "already open: an account with this name and the same fields exists"},
        {
            409: "exists_with_different_fields: an account with this name exists with other fields",
            422: "name_invalid (including names of the form id:<digits>, which mean ids), unknown_asset, kind_invalid",
        },
        post=True,
        models={200: AccountOut},
    ),
)
def create_account(
    body: AccountIn,
    request: Request,
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    ctx: Context = Depends(context),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler(conn: Connection) -> tuple[int, dict[str, Any]]:
        if isinstance(refs.parse(body.name.strip()), int):
            raise ApiProblem(
                422, Result.NAME_INVALID.value, f"account name {body.name!r} is reserved: 'id:<digits>' names an id"
            )
        flags = (AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS if body.debits_must_not_exceed_credits else 0) | (
            AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS if body.credits_must_not_exceed_debits else 0
        )
        spec = AccountSpec(body.name, body.asset.upper(), kind=body.kind, flags=int(flags), metadata=body.metadata)
        (result,) = ctx.ledger.create_accounts([spec], conn=conn)
        if not result.ok:
            raise ApiProblem(
                _STATUS.get(result.result, 422),
                result.result.value,
                f"account {body.name!r} was refused: {result.result.value.replace('_', ' ')}",
            )
        account = ctx.ledger.account(result.account_id or 0, conn=conn)
        return (201 if result.result == Result.OK else 200), account_view(account, _scale(ctx, account.asset))

    return store.run_atomic(scoped(principal, "POST /v1/accounts"), key, body.model_dump(mode="json"), handler)


_LIST_REFUSED = {
    400: "invalid_cursor: the cursor is not one this API returned",
    422: "invalid_request: a query parameter is out of range (limit is 1 to 1000)",
}


@router.get(
    "/accounts",
    response_model=AccountPage,
    tags=["ledger"],
    summary="List accounts",
    responses=responses({200: "a page of accounts"}, _LIST_REFUSED),
)
def list_accounts(
    principal: Principal = allow(READERS, Role.CLIENT),
    ctx: Context = Depends(context),
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    asset: str | None = None,
    prefix: str | None = Query(None, description="name prefix, e.g. clients:acme:"),
) -> dict[str, Any]:
    own = principal.only_client()
    if own is not None:  # a client lists its own accounts only
        mine = client_prefix(own)
        if prefix is not None and not prefix.startswith(mine):
            return {"data": [], "next_cursor": None}
        prefix = prefix or mine
    rows = ctx.ledger.list_accounts(after_id=decode_cursor(cursor), limit=limit, asset=asset, prefix=prefix)
    return {
        "data": [account_view(a, _scale(ctx, a.asset)) for a in rows],
        "next_cursor": encode_cursor(rows[-1].id) if len(rows) == limit else None,
    }


_NO_ACCOUNT = {404: "account_not_found: no account by that name or id"}


@router.get(
    "/accounts/{ref}",
    response_model=AccountOut,
    tags=["ledger"],
    summary="An account and its balances, by name or id:<id>",
    responses=responses({200: "the account"}, _NO_ACCOUNT),
)
def get_account(
    ref: Annotated[str, PathParam(description=PATH_REF_DESCRIPTION)],
    principal: Principal = allow(READERS, Role.CLIENT),
    ctx: Context = Depends(context),
) -> dict[str, Any]:
    account = visible_account(ctx, principal, ref)
    return account_view(account, _scale(ctx, account.asset))


@router.get(
    "/accounts/{ref}/transfers",
    response_model=TransferPage,
    tags=["ledger"],
    summary="An account's history",
    responses=responses({200: "a page of the account's transfers, oldest first"}, {**_LIST_REFUSED, **_NO_ACCOUNT}),
)
def account_history(
    ref: Annotated[str, PathParam(description=PATH_REF_DESCRIPTION)],
    principal: Principal = allow(READERS, Role.CLIENT),
    ctx: Context = Depends(context),
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    account = visible_account(ctx, principal, ref)
    rows = ctx.ledger.list_transfers(after_seq=decode_cursor(cursor), limit=limit, account_id=account.id)
    scale = _scale(ctx, account.asset)
    return {
        "data": [transfer_view(t, scale) for t in rows],
        "next_cursor": encode_cursor(rows[-1].seq) if len(rows) == limit else None,
    }


@router.post(
    "/transfers",
    status_code=201,
    response_model=TransferOut,
    tags=["ledger"],
    summary="Create a transfer",
    openapi_extra=idempotent(),
    responses=responses(
        _TRANSFER_CREATED,
        {**_TRANSFER_REFUSED, 422: _TRANSFER_REFUSED[422] + "; linked_requires_batch"},
        post=True,
        models={200: TransferOut},
    ),
)
def create_transfer(
    body: TransferIn,
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    ctx: Context = Depends(context),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    if body.linked:
        raise ApiProblem(422, "linked_requires_batch", "linked transfers are created with POST /v1/transfers/batch")
    return store.run_atomic(
        scoped(principal, "POST /v1/transfers"),
        key,
        body.model_dump(mode="json"),
        lambda conn: _single(ctx, _spec(ctx, body, default_transfer_id(principal.key_id, "t", key)), conn),
    )


def _batch_specs(ctx: Context, body: BatchIn, key_id: str, key: str) -> list[TransferSpec]:
    """Every transfer's spec, or one 422 problem naming each refused transfer by its index."""
    specs: list[TransferSpec] = []
    errors: list[dict[str, Any]] = []
    known: dict[tuple[str, int | str], int] = {}
    for index, transfer in enumerate(body.transfers):
        try:
            specs.append(_spec(ctx, transfer, default_transfer_id(key_id, "b", key, index), known))
        except DomainError as exc:
            errors.append(
                {"index": index, "location": f"body.transfers.{index}", "code": exc.code, "message": exc.message}
            )
            if len(errors) == ERRORS_MAX:
                break
    if errors:
        first = errors[0]
        more = f" (and {len(errors) - 1} more, see errors)" if len(errors) > 1 else ""
        raise ApiProblem(422, first["code"], f"transfer {first['index']}: {first['message']}{more}", errors=errors)
    return specs


@router.post(
    "/transfers/batch",
    response_model=BatchOut,
    tags=["ledger"],
    summary="Create up to 8,190 transfers, linked chains atomic",
    openapi_extra=idempotent(),
    responses=responses(
        {200: "one result per transfer, in order: {index, id, result}; result is ok, exists or the refusal's code"},
        {
            422: (
                "invalid_request, or the code of the first transfer that cannot be read (account_not_found, "
                "unknown_asset, excess_precision...); `errors` names every such transfer by its index"
            )
        },
        post=True,
    ),
)
def create_batch(
    body: BatchIn,
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    ctx: Context = Depends(context),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler(conn: Connection) -> tuple[int, dict[str, Any]]:
        results = ctx.ledger.create_transfers(_batch_specs(ctx, body, principal.key_id, key), conn=conn)
        return 200, {"results": [{"index": r.index, "id": r.id, "result": r.result.value} for r in results]}

    return store.run_atomic(scoped(principal, "POST /v1/transfers/batch"), key, body.model_dump(mode="json"), handler)


def _second_phase(
    ctx: Context, pending_id: str, body: SecondPhaseIn, default_id: str, flag: TransferFlags, conn: Connection
) -> Any:
    pending = ctx.ledger.transfer(pending_id, conn=conn)
    amount = parse_minor(body.amount, _scale(ctx, pending.asset)) if body.amount is not None else None
    spec = TransferSpec(id=body.id or default_id, flags=int(flag), pending_id=pending_id, amount=amount, memo=body.memo)
    return _single(ctx, spec, conn)


_SECOND_PHASE_REFUSED = {
    404: "transfer_not_found / pending_transfer_not_found: no pending transfer with this id",
    409: _TRANSFER_REFUSED[409],
    422: (
        "pending_transfer_already_posted, pending_transfer_already_voided, pending_transfer_expired, "
        "exceeds_pending_transfer_amount, invalid_request..."
    ),
}


def _second_phase_payload(transfer_id: str, body: SecondPhaseIn) -> dict[str, Any]:
    # The path's id is part of what the key stands for: the same key for another pending
    # transfer is a different request (409), and the stored scope stays the route's template.
    return {"transfer_id": transfer_id, **body.model_dump(mode="json")}


@router.post(
    "/transfers/{transfer_id}/post",
    status_code=201,
    response_model=TransferOut,
    tags=["ledger"],
    summary="Post a pending transfer",
    openapi_extra=idempotent(),
    responses=responses(
        {201: "posted: the posting transfer was created", 200: _TRANSFER_CREATED[200]},
        _SECOND_PHASE_REFUSED,
        post=True,
        models={200: TransferOut},
    ),
)
def post_pending(
    transfer_id: Annotated[str, PathParam(description=TRANSFER_ID_DESCRIPTION)],
    body: SecondPhaseIn,
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    ctx: Context = Depends(context),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    pending_id = _transfer_id(transfer_id)
    return store.run_atomic(
        scoped(principal, "POST /v1/transfers/{transfer_id}/post"),
        key,
        _second_phase_payload(pending_id, body),
        lambda conn: _second_phase(
            ctx, pending_id, body, default_transfer_id(principal.key_id, "post", key), TransferFlags.POST_PENDING, conn
        ),
    )


@router.post(
    "/transfers/{transfer_id}/void",
    status_code=201,
    response_model=TransferOut,
    tags=["ledger"],
    summary="Void a pending transfer",
    openapi_extra=idempotent(),
    responses=responses(
        {201: "voided: the voiding transfer was created", 200: _TRANSFER_CREATED[200]},
        _SECOND_PHASE_REFUSED,
        post=True,
        models={200: TransferOut},
    ),
)
def void_pending(
    transfer_id: Annotated[str, PathParam(description=TRANSFER_ID_DESCRIPTION)],
    body: SecondPhaseIn,
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    ctx: Context = Depends(context),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    pending_id = _transfer_id(transfer_id)
    if body.amount is not None:
        raise ApiProblem(422, "invalid_request", "a void releases the whole pending amount; send no amount")
    return store.run_atomic(
        scoped(principal, "POST /v1/transfers/{transfer_id}/void"),
        key,
        _second_phase_payload(pending_id, body),
        lambda conn: _second_phase(
            ctx, pending_id, body, default_transfer_id(principal.key_id, "void", key), TransferFlags.VOID_PENDING, conn
        ),
    )


@router.get(
    "/transfers",
    response_model=TransferPage,
    tags=["ledger"],
    summary="List transfers, oldest first, with a cursor",
    responses=responses({200: "a page of transfers, oldest first"}, {**_LIST_REFUSED, **_NO_ACCOUNT}),
)
def list_transfers(
    principal: Principal = allow(READERS),
    ctx: Context = Depends(context),
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    account: str | None = Query(None, description="only this account's transfers: " + PATH_REF_DESCRIPTION),
) -> dict[str, Any]:
    account_id = refs.account(ctx, refs.parse(account)).id if account else None
    rows = ctx.ledger.list_transfers(after_seq=decode_cursor(cursor), limit=limit, account_id=account_id)
    return {
        "data": [transfer_view(t, _scale(ctx, t.asset)) for t in rows],
        "next_cursor": encode_cursor(rows[-1].seq) if len(rows) == limit else None,
    }


@router.get(
    "/transfers/{transfer_id}",
    response_model=TransferOut,
    tags=["ledger"],
    summary="A transfer by id",
    responses=responses({200: "the transfer"}, {404: "transfer_not_found: no transfer with this id"}),
)
def get_transfer(
    transfer_id: Annotated[str, PathParam(description=TRANSFER_ID_DESCRIPTION)],
    principal: Principal = allow(READERS, Role.CLIENT),
    ctx: Context = Depends(context),
) -> dict[str, Any]:
    transfer = ctx.ledger.transfer(_transfer_id(transfer_id))
    own = principal.only_client()
    if own is not None:
        names = {
            ctx.ledger.account(transfer.debit_account_id).name,
            ctx.ledger.account(transfer.credit_account_id).name,
        }
        if not any(name.startswith(client_prefix(own)) for name in names):
            raise NotFound(f"no transfer {transfer_id!r}", code="transfer_not_found")
    return transfer_view(transfer, _scale(ctx, transfer.asset))
