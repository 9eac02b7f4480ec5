"""/v1/accounts and /v1/transfers: the ledger over HTTP."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Header, Query, Request
from pydantic import BaseModel, ConfigDict, Field

from andchain.api.deps import context, decode_cursor, encode_cursor, idempotency
from andchain.api.idempotency import IdempotencyStore, check_key
from andchain.api.problems import ApiProblem
from andchain.context import Context
from andchain.errors import DomainError
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
from andchain.money import format_minor, parse_minor

router = APIRouter(prefix="/v1")

IdempotencyKey = Annotated[str | None, Header(alias="Idempotency-Key", description="unique per request")]
AMOUNT_PATTERN = r"^\d{1,40}(\.\d{1,36})?$"

# Which HTTP status each refusal gets; anything else about the content is 422.
_STATUS = {
    Result.EXISTS_WITH_DIFFERENT_FIELDS: 409,
    Result.PENDING_TRANSFER_NOT_FOUND: 404,
}


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
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200, examples=["clients:acme:usd:dda"])
    asset: str = Field(min_length=1, max_length=16, examples=["USD"])
    kind: Literal["asset", "liability", "equity", "income", "expense"] = "asset"
    debits_must_not_exceed_credits: bool = False
    credits_must_not_exceed_debits: bool = False
    metadata: dict[str, Any] | None = None


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=128, description="defaults to the Idempotency-Key")
    debit_account: int | str = Field(description="account id or name")
    credit_account: int | str = Field(description="account id or name")
    amount: str = Field(pattern=AMOUNT_PATTERN, description="decimal string in the asset's units, e.g. '12.34'")
    asset: str = Field(min_length=1, max_length=16)
    code: str = Field(default="", max_length=64)
    memo: str = Field(default="", max_length=256)
    metadata: dict[str, Any] | None = None
    pending: bool = False
    timeout_s: int = Field(default=0, ge=0, le=10 * 365 * 86400)
    linked: bool = Field(default=False, description="batch only: linked to the next transfer")


class BatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    transfers: list[TransferIn] = Field(min_length=1, max_length=BATCH_SIZE_MAX)


class SecondPhaseIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: str | None = Field(default=None, max_length=128)
    amount: str | None = Field(default=None, pattern=AMOUNT_PATTERN, description="post only: part to post")
    memo: str = Field(default="", max_length=256)


def _scale(ctx: Context, asset: str) -> int:
    return ctx.assets.get(asset).scale


def _account_ref(ctx: Context, ref: int | str) -> int:
    try:
        return ctx.ledger.account_id(ref)
    except DomainError:
        raise ApiProblem(422, "account_not_found", f"no account {ref!r}") from None


def _spec(ctx: Context, body: TransferIn, default_id: str | None) -> TransferSpec:
    scale = _scale(ctx, body.asset)
    flags = (TransferFlags.PENDING if body.pending else 0) | (TransferFlags.LINKED if body.linked else 0)
    return TransferSpec(
        id=body.id or default_id,
        debit_account_id=_account_ref(ctx, body.debit_account),
        credit_account_id=_account_ref(ctx, body.credit_account),
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


def _single(ctx: Context, spec: TransferSpec) -> tuple[int, dict[str, Any]]:
    result = ctx.ledger.create_transfer(spec)
    if not result.ok:
        raise _refusal(result)
    transfer = ctx.ledger.transfer(result.id)
    return (201 if result.result == Result.OK else 200), transfer_view(transfer, _scale(ctx, transfer.asset))


@router.post("/accounts", status_code=201, tags=["ledger"], summary="Open an account")
def create_account(
    body: AccountIn,
    request: Request,
    key: IdempotencyKey = None,
    ctx: Context = Depends(context),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def handler() -> tuple[int, dict[str, Any]]:
        flags = (AccountFlags.DEBITS_MUST_NOT_EXCEED_CREDITS if body.debits_must_not_exceed_credits else 0) | (
            AccountFlags.CREDITS_MUST_NOT_EXCEED_DEBITS if body.credits_must_not_exceed_debits else 0
        )
        spec = AccountSpec(body.name, body.asset.upper(), kind=body.kind, flags=int(flags), metadata=body.metadata)
        (result,) = ctx.ledger.create_accounts([spec])
        if not result.ok:
            raise ApiProblem(
                _STATUS.get(result.result, 422),
                result.result.value,
                f"account {body.name!r} was refused: {result.result.value.replace('_', ' ')}",
            )
        account = ctx.ledger.account(result.account_id or 0)
        return (201 if result.result == Result.OK else 200), account_view(account, _scale(ctx, account.asset))

    return store.run("POST /v1/accounts", check_key(key), body.model_dump(mode="json"), handler)


@router.get("/accounts", tags=["ledger"], summary="List accounts")
def list_accounts(
    ctx: Context = Depends(context),
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    asset: str | None = None,
    prefix: str | None = Query(None, description="name prefix, e.g. clients:acme:"),
) -> dict[str, Any]:
    rows = ctx.ledger.list_accounts(after_id=decode_cursor(cursor), limit=limit, asset=asset, prefix=prefix)
    return {
        "data": [account_view(a, _scale(ctx, a.asset)) for a in rows],
        "next_cursor": encode_cursor(rows[-1].id) if len(rows) == limit else None,
    }


@router.get("/accounts/{ref}", tags=["ledger"], summary="An account and its balances, by id or name")
def get_account(ref: str, ctx: Context = Depends(context)) -> dict[str, Any]:
    account = ctx.ledger.account(int(ref) if ref.isdigit() else ref)
    return account_view(account, _scale(ctx, account.asset))


@router.get("/accounts/{ref}/transfers", tags=["ledger"], summary="An account's history")
def account_history(
    ref: str, ctx: Context = Depends(context), cursor: str | None = None, limit: int = Query(100, ge=1, le=1000)
) -> dict[str, Any]:
    account = ctx.ledger.account(int(ref) if ref.isdigit() else ref)
    rows = ctx.ledger.list_transfers(after_seq=decode_cursor(cursor), limit=limit, account_id=account.id)
    scale = _scale(ctx, account.asset)
    return {
        "data": [transfer_view(t, scale) for t in rows],
        "next_cursor": encode_cursor(rows[-1].seq) if len(rows) == limit else None,
    }


@router.post("/transfers", status_code=201, tags=["ledger"], summary="Create a transfer")
def create_transfer(
    body: TransferIn,
    key: IdempotencyKey = None,
    ctx: Context = Depends(context),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    key = check_key(key)
    if body.linked:
        raise ApiProblem(422, "linked_requires_batch", "linked transfers are created with POST /v1/transfers/batch")
    return store.run(
        "POST /v1/transfers", key, body.model_dump(mode="json"), lambda: _single(ctx, _spec(ctx, body, key))
    )


@router.post("/transfers/batch", tags=["ledger"], summary="Create up to 8,190 transfers, linked chains atomic")
def create_batch(
    body: BatchIn,
    key: IdempotencyKey = None,
    ctx: Context = Depends(context),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    key = check_key(key)

    def handler() -> tuple[int, dict[str, Any]]:
        specs = [_spec(ctx, t, f"{key}:{i}") for i, t in enumerate(body.transfers)]
        results = ctx.ledger.create_transfers(specs)
        return 200, {"results": [{"index": r.index, "id": r.id, "result": r.result.value} for r in results]}

    return store.run("POST /v1/transfers/batch", key, body.model_dump(mode="json"), handler)


def _second_phase(ctx: Context, pending_id: str, body: SecondPhaseIn, key: str, flag: TransferFlags) -> Any:
    pending = ctx.ledger.transfer(pending_id)
    amount = parse_minor(body.amount, _scale(ctx, pending.asset)) if body.amount is not None else None
    spec = TransferSpec(id=body.id or key, flags=int(flag), pending_id=pending_id, amount=amount, memo=body.memo)
    return _single(ctx, spec)


@router.post("/transfers/{transfer_id}/post", status_code=201, tags=["ledger"], summary="Post a pending transfer")
def post_pending(
    transfer_id: str,
    body: SecondPhaseIn,
    key: IdempotencyKey = None,
    ctx: Context = Depends(context),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    key = check_key(key)
    return store.run(
        f"POST /v1/transfers/{transfer_id}/post",
        key,
        body.model_dump(mode="json"),
        lambda: _second_phase(ctx, transfer_id, body, key, TransferFlags.POST_PENDING),
    )


@router.post("/transfers/{transfer_id}/void", status_code=201, tags=["ledger"], summary="Void a pending transfer")
def void_pending(
    transfer_id: str,
    body: SecondPhaseIn,
    key: IdempotencyKey = None,
    ctx: Context = Depends(context),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    key = check_key(key)
    if body.amount is not None:
        raise ApiProblem(422, "invalid_request", "a void releases the whole pending amount; send no amount")
    return store.run(
        f"POST /v1/transfers/{transfer_id}/void",
        key,
        body.model_dump(mode="json"),
        lambda: _second_phase(ctx, transfer_id, body, key, TransferFlags.VOID_PENDING),
    )


@router.get("/transfers", tags=["ledger"], summary="List transfers, oldest first, with a cursor")
def list_transfers(
    ctx: Context = Depends(context),
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
    account: str | None = Query(None, description="only this account's transfers (id or name)"),
) -> dict[str, Any]:
    account_id = ctx.ledger.account(int(account) if account.isdigit() else account).id if account else None
    rows = ctx.ledger.list_transfers(after_seq=decode_cursor(cursor), limit=limit, account_id=account_id)
    return {
        "data": [transfer_view(t, _scale(ctx, t.asset)) for t in rows],
        "next_cursor": encode_cursor(rows[-1].seq) if len(rows) == limit else None,
    }


@router.get("/transfers/{transfer_id}", tags=["ledger"], summary="A transfer by id")
def get_transfer(transfer_id: str, ctx: Context = Depends(context)) -> dict[str, Any]:
    transfer = ctx.ledger.transfer(transfer_id)
    return transfer_view(transfer, _scale(ctx, transfer.asset))
