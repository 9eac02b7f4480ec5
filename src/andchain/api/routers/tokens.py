"""/v1/tokens: mint, pay, redeem, move, DvP, fund shares, stray tokens, and each network's holders.

Every request that moves value is recorded as an operation, with what it reserves, before
anything is sent; the answer is `202` with the operation and `Location: /v1/operations/{id}`,
which the caller follows until it is final (the worker advances it).

Who may call:
- mint, redeem, move: operator, admin, and a client for itself;
- pay: the paying client itself, operator, admin;
- dvp, issue-shares, return-stray: operator, admin (a DvP binds two clients; shares are the
  fund's to issue; stray tokens are the bank's to return);
- holders: the bank's readers (operator, compliance, auditor, admin).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Annotated, Any, Literal, get_args

from fastapi import APIRouter, Depends, Query
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field

from andchain.api.auth import BANK_WRITERS, READERS, Principal, Role, allow
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import decode_cursor, encode_cursor, idempotency, token_service
from andchain.api.idempotency import IdempotencyStore, idempotency_key
from andchain.api.problems import responses
from andchain.api.routers.common import (
    CLIENT_DESCRIPTION,
    CLIENT_REF_LENGTH_MAX,
    NETWORK_LENGTH_MAX,
    PAYEE_NOT_PAYABLE,
    OperationOut,
    accepted,
    accepted_responses,
    acting_client,
    hidden_payee,
    operation_key,
    operation_view,
    own_client,
)
from andchain.api.routers.ledger import AMOUNT_DESCRIPTION, AMOUNT_PATTERN, idempotent, scoped
from andchain.errors import DomainError, NotFound
from andchain.money import format_minor, parse_minor
from andchain.ops import Operation
from andchain.tokens.model import DEPOSIT_TOKEN, FUND_SHARE, TOKENS, holders_prefix
from andchain.tokens.requests import BATCH_MAX, DVP_TTL_MAX_S
from andchain.tokens.service import TOKEN_ABI, TokenService

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)

USD = TOKENS[DEPOSIT_TOKEN].decimals
SHARES = TOKENS[FUND_SHARE].decimals
NETWORK_FIELD = Field(default="internal", min_length=1, max_length=NETWORK_LENGTH_MAX, examples=["internal"])
USD_DESCRIPTION = "deposit tokens (USD, 2 decimals): " + AMOUNT_DESCRIPTION
OTHER_CLIENT = "the other client's id (or its name)"
TokenName = Literal["deposit_token", "mmf_share"]
assert set(get_args(TokenName)) == set(TOKENS), "the API names every token the bank issues"

_REFUSED = {
    404: "client_not_found (also another client's, for a client key), unknown_network",
    422: (
        "a refusal with its stable code: insufficient_funds, client_not_active, amount_must_be_positive, "
        "excess_precision, token_not_deployed, ..."
    ),
    502: "rpc_error: the network's node answered a read this request needs with an error; nothing was recorded",
    503: "node_unreachable: the network's node did not answer a read this request needs; nothing was recorded",
}


_MOVE_REFUSED = "same_network, network_paused, rate_limited, no_registered_address, approval_required"


def _client(default: None = None) -> Any:
    return Field(default=default, min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description=CLIENT_DESCRIPTION)


class MintIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    client: str | None = _client()
    network: str = NETWORK_FIELD
    amount: str = Field(pattern=AMOUNT_PATTERN, description=USD_DESCRIPTION, examples=["600.00"])


class PayIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    payer: str | None = _client()
    payee: str = Field(min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description=OTHER_CLIENT)
    network: str = NETWORK_FIELD
    amount: str = Field(pattern=AMOUNT_PATTERN, description=USD_DESCRIPTION, examples=["250.00"])
    memo: str = Field(
        max_length=256, description="the payment reference, on chain with the payment (at most 32 bytes as text)"
    )


class RedeemIn(MintIn):
    pass


class MoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    client: str | None = _client()
    source: str = Field(min_length=1, max_length=NETWORK_LENGTH_MAX, examples=["internal"])
    destination: str = Field(min_length=1, max_length=NETWORK_LENGTH_MAX, examples=["base"])
    amount: str = Field(pattern=AMOUNT_PATTERN, description=USD_DESCRIPTION, examples=["100.00"])


class DvpIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    buyer: str = Field(min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description="pays in deposit tokens")
    seller: str = Field(min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description="delivers fund shares")
    network: str = NETWORK_FIELD
    cash: str = Field(pattern=AMOUNT_PATTERN, description=USD_DESCRIPTION, examples=["200.00"])
    shares: str = Field(
        pattern=AMOUNT_PATTERN, description="fund shares (MMF, 6 decimals): " + AMOUNT_DESCRIPTION, examples=["1.5"]
    )
    ttl_s: int = Field(default=3600, ge=60, le=DVP_TTL_MAX_S, description="after this, a funded leg is refunded")


class IssueSharesIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    client: str = Field(min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description="the client's id (or its name)")
    network: str = NETWORK_FIELD
    shares: str = Field(
        pattern=AMOUNT_PATTERN, description="fund shares (MMF, 6 decimals): " + AMOUNT_DESCRIPTION, examples=["1.5"]
    )


class ReturnStrayIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    network: str = NETWORK_FIELD
    receiver: str = Field(min_length=1, max_length=64, description="the address the tokens go back to (0x...)")
    amount: str = Field(pattern=AMOUNT_PATTERN, description="in the token's units: " + AMOUNT_DESCRIPTION)
    token: TokenName = "deposit_token"


def _accept(store: IdempotencyStore, principal: Principal, route: str, key: str, body: BaseModel, handler: Any) -> Any:
    def run() -> tuple[int, dict[str, Any]]:
        return 202, operation_view(handler())

    return accepted(store.run(scoped(principal, f"POST /v1/tokens/{route}"), key, body.model_dump(mode="json"), run))


@router.post(
    "/tokens/mint",
    status_code=202,
    response_model=OperationOut,
    tags=["tokens"],
    summary="Mint deposit tokens from a client's deposit account to its holder on a network",
    openapi_extra=idempotent(),
    responses=accepted_responses(_REFUSED),
)
def mint(
    body: MintIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """The amount is reserved in the deposit account at once (`insufficient_funds` otherwise), minted on
    chain by the worker, and booked when the mint is final; voided if the chain refuses it."""
    return _accept(
        store,
        principal,
        "mint",
        key,
        body,
        lambda: service.mint(
            acting_client(principal, service, body.client),
            body.network,
            parse_minor(body.amount, USD),
            operation_key(principal, "mint", key),
        ),
    )


def _item_key(what: str) -> Any:
    return Field(
        default=None,
        min_length=1,
        max_length=128,
        description=f"this {what}'s own idempotency key (across batches); default: the batch's key and its place",
    )


def _batch_responses(refused: dict[int, str]) -> dict[int | str, dict[str, Any]]:
    return responses({200: "each item's operation (follow it at /v1/operations/{id}) or refusal"}, refused, post=True)


def _item_op_key(principal: Principal, kind: str, own: str | None, key: str, index: int) -> str:
    """An item's own key names its operation as a single request's would; one derived from the batch's key
    and the item's place lives apart."""
    return operation_key(principal, kind, own) if own else operation_key(principal, f"{kind}-batch", f"{key}#{index}")


def _run_batch(
    store: IdempotencyStore,
    principal: Principal,
    route: str,
    key: str,
    body: BaseModel,
    record: Callable[[], list[Operation | DomainError]],
    *,
    hide_payee: bool = False,
) -> Any:
    def run() -> tuple[int, dict[str, Any]]:
        return 200, _batch_results(record(), hide_payee=hide_payee)

    return store.run(scoped(principal, f"POST /v1/tokens/{route}"), key, body.model_dump(mode="json"), run)


class MintBatchItem(MintIn):
    key: str | None = _item_key("mint")


class MintBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    mints: list[MintBatchItem] = Field(min_length=1, max_length=BATCH_MAX)


class BatchError(BaseModel):
    code: str
    message: str


class BatchItemOut(BaseModel):
    index: int
    operation: OperationOut | None = Field(description="the operation recorded (or found again), or none")
    error: BatchError | None = Field(description="why this item was refused (it recorded nothing)")


class MintBatchOut(BaseModel):
    accepted: int
    refused: int
    results: list[BatchItemOut]


@router.post(
    "/tokens/mints/batch",
    status_code=200,
    response_model=MintBatchOut,
    tags=["tokens"],
    summary="Many mints in one request and one database transaction; each item accepted or refused on its own",
    openapi_extra=idempotent(),
    responses=_batch_responses(_REFUSED),
)
def mint_batch(
    body: MintBatchIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """Up to 1,000 mints: every item is checked, screened and admitted as a single mint is, and those
    accepted are recorded together with their holds. A refused item (its funds, its limits, its client)
    records nothing and does not stop the others. The same request again answers the same results."""

    def record() -> list[Operation | DomainError]:
        return service.requests.mint_batch(
            [
                (
                    acting_client(principal, service, m.client),
                    m.network,
                    parse_minor(m.amount, USD),
                    _item_op_key(principal, "mint", m.key, key, i),
                )
                for i, m in enumerate(body.mints)
            ]
        )

    return _run_batch(store, principal, "mints/batch", key, body, record)


@router.post(
    "/tokens/pay",
    status_code=202,
    response_model=OperationOut,
    tags=["tokens"],
    summary="Pay another client in deposit tokens, with a memo",
    openapi_extra=idempotent(),
    responses=accepted_responses(
        {
            **_REFUSED,
            422: _REFUSED[422] + "; accounts_must_be_different, memo_too_long, not_bank_managed, payee_not_payable "
            "(a client key: the payee is no active client; the bank's roles get client_not_found or client_not_active)",
        }
    ),
)
def pay(
    body: PayIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """Signed by the payer's bank-managed wallet. A client key pays from its own client only."""
    return _accept(
        store,
        principal,
        "pay",
        key,
        body,
        lambda: hidden_payee(
            principal,
            lambda: service.pay(
                acting_client(principal, service, body.payer, "payer"),
                body.payee,
                body.network,
                parse_minor(body.amount, USD),
                body.memo,
                operation_key(principal, "pay", key),
            ),
        ),
    )


class PayBatchItem(PayIn):
    key: str | None = _item_key("payment")


class PayBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    payments: list[PayBatchItem] = Field(min_length=1, max_length=BATCH_MAX)


@router.post(
    "/tokens/payments/batch",
    status_code=200,
    response_model=MintBatchOut,
    tags=["tokens"],
    summary="Many payments in one request and one database transaction; each item accepted or refused on its own",
    openapi_extra=idempotent(),
    responses=_batch_responses(_REFUSED),
)
def pay_batch(
    body: PayBatchIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """Up to 1,000 payments: every item is checked, screened and admitted as a single payment is, and
    those accepted are recorded together. A refused item records nothing and does not stop the others; for
    a client key a payee that cannot be paid is `payee_not_payable`, naming nothing. The same request again
    answers the same results."""

    def record() -> list[Operation | DomainError]:
        return service.requests.pay_batch(
            [
                (
                    acting_client(principal, service, m.payer, "payer"),
                    m.payee,
                    m.network,
                    parse_minor(m.amount, USD),
                    m.memo,
                    _item_op_key(principal, "pay", m.key, key, i),
                )
                for i, m in enumerate(body.payments)
            ]
        )

    hide = own_client(principal) is not None
    return _run_batch(store, principal, "payments/batch", key, body, record, hide_payee=hide)


def _batch_results(outcomes: list[Operation | DomainError], *, hide_payee: bool = False) -> dict[str, Any]:
    """A batch's answer: each item's operation or refusal, in the order of the request."""
    results = []
    for i, outcome in enumerate(outcomes):
        if isinstance(outcome, Operation):
            results.append({"index": i, "operation": operation_view(outcome), "error": None})
            continue
        error = {"code": outcome.code, "message": outcome.message}
        if hide_payee and outcome.details.get("field") == "payee":
            error = {"code": "payee_not_payable", "message": PAYEE_NOT_PAYABLE}
        results.append({"index": i, "operation": None, "error": error})
    accepted = sum(1 for r in results if r["operation"] is not None)
    return {"accepted": accepted, "refused": len(results) - accepted, "results": results}


@router.post(
    "/tokens/redeem",
    status_code=202,
    response_model=OperationOut,
    tags=["tokens"],
    summary="Redeem deposit tokens back to the client's deposit account",
    openapi_extra=idempotent(),
    responses=accepted_responses({**_REFUSED, 422: _REFUSED[422] + "; approval_required (a public network)"}),
)
def redeem(
    body: RedeemIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """The bank's minter burns the tokens from the client's holder; the deposit account is credited when
    the burn is final."""
    return _accept(
        store,
        principal,
        "redeem",
        key,
        body,
        lambda: service.redeem(
            acting_client(principal, service, body.client),
            body.network,
            parse_minor(body.amount, USD),
            operation_key(principal, "redeem", key),
        ),
    )


class RedeemBatchItem(RedeemIn):
    key: str | None = _item_key("redemption")


class RedeemBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    redemptions: list[RedeemBatchItem] = Field(min_length=1, max_length=BATCH_MAX)


@router.post(
    "/tokens/redemptions/batch",
    status_code=200,
    response_model=MintBatchOut,
    tags=["tokens"],
    summary="Many redemptions in one request and one database transaction; each item accepted or refused on its own",
    openapi_extra=idempotent(),
    responses=_batch_responses({**_REFUSED, 422: _REFUSED[422] + "; approval_required (a public network)"}),
)
def redeem_batch(
    body: RedeemBatchIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """Up to 1,000 redemptions: every item is checked, screened and admitted as a single redemption is
    (what the batch's earlier items take from a holder counts against it, and against the allowance a
    client's own address gave the bank's minter), and those accepted are recorded together with their
    holds. A refused item records nothing and does not stop the others. The same request again answers the
    same results."""

    def record() -> list[Operation | DomainError]:
        return service.requests.redeem_batch(
            [
                (
                    acting_client(principal, service, r.client),
                    r.network,
                    parse_minor(r.amount, USD),
                    _item_op_key(principal, "redeem", r.key, key, i),
                )
                for i, r in enumerate(body.redemptions)
            ]
        )

    return _run_batch(store, principal, "redemptions/batch", key, body, record)


@router.post(
    "/tokens/move",
    status_code=202,
    response_model=OperationOut,
    tags=["tokens"],
    summary="Move deposit tokens between networks: burn on the source, mint on the destination",
    openapi_extra=idempotent(),
    responses=accepted_responses(
        {
            **_REFUSED,
            422: _REFUSED[422] + "; " + _MOVE_REFUSED,
        }
    ),
)
def move(
    body: MoveIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """Each network's pause switch and rate limits apply; a destination that refuses is compensated by a
    mint back on the source."""
    return _accept(
        store,
        principal,
        "move",
        key,
        body,
        lambda: service.move(
            acting_client(principal, service, body.client),
            body.source,
            body.destination,
            parse_minor(body.amount, USD),
            operation_key(principal, "move", key),
        ),
    )


class MoveBatchItem(MoveIn):
    key: str | None = _item_key("move")


class MoveBatchIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    moves: list[MoveBatchItem] = Field(min_length=1, max_length=BATCH_MAX)


@router.post(
    "/tokens/moves/batch",
    status_code=200,
    response_model=MintBatchOut,
    tags=["tokens"],
    summary="Many moves in one request and one database transaction; each item accepted or refused on its own",
    openapi_extra=idempotent(),
    responses=_batch_responses({**_REFUSED, 422: _REFUSED[422] + "; " + _MOVE_REFUSED}),
)
def move_batch(
    body: MoveBatchIn,
    principal: Principal = allow(BANK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """Up to 1,000 moves: every item is checked, screened and admitted as a single move is (what the batch's
    earlier items take from a holder counts against it), and those accepted are recorded together with
    their holds, in the order of their clients (each network's rate limits count them in that order). A
    refused item (`rate_limited` among others) records nothing and does not stop the others. The same
    request again answers the same results."""

    def record() -> list[Operation | DomainError]:
        return service.requests.move_batch(
            [
                (
                    acting_client(principal, service, m.client),
                    m.source,
                    m.destination,
                    parse_minor(m.amount, USD),
                    _item_op_key(principal, "move", m.key, key, i),
                )
                for i, m in enumerate(body.moves)
            ]
        )

    return _run_batch(store, principal, "moves/batch", key, body, record)


@router.post(
    "/tokens/dvp",
    status_code=202,
    response_model=OperationOut,
    tags=["tokens"],
    summary="Delivery versus payment: deposit tokens against fund shares, atomically",
    openapi_extra=idempotent(),
    responses=accepted_responses({**_REFUSED, 422: _REFUSED[422] + "; accounts_must_be_different, not_bank_managed"}),
)
def dvp(
    body: DvpIn,
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    return _accept(
        store,
        principal,
        "dvp",
        key,
        body,
        lambda: service.dvp(
            body.buyer,
            body.seller,
            body.network,
            parse_minor(body.cash, USD),
            parse_minor(body.shares, SHARES),
            operation_key(principal, "dvp", key),
            ttl_s=body.ttl_s,
        ),
    )


@router.post(
    "/tokens/issue-shares",
    status_code=202,
    response_model=OperationOut,
    tags=["tokens"],
    summary="Issue tokenized money-market fund shares to a client",
    openapi_extra=idempotent(),
    responses=accepted_responses(_REFUSED),
)
def issue_shares(
    body: IssueSharesIn,
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    return _accept(
        store,
        principal,
        "issue-shares",
        key,
        body,
        lambda: service.issue_shares(
            body.client, body.network, parse_minor(body.shares, SHARES), operation_key(principal, "issue_shares", key)
        ),
    )


@router.post(
    "/tokens/return-stray",
    status_code=202,
    response_model=OperationOut,
    tags=["tokens"],
    summary="Return tokens sent to the DvP contract outside any trade",
    openapi_extra=idempotent(),
    responses=accepted_responses(
        {
            **_REFUSED,
            422: _REFUSED[422] + "; invalid_address; the DvP contract's mirror holds less (insufficient_funds)",
        }
    ),
)
def return_stray(
    body: ReturnStrayIn,
    principal: Principal = allow(BANK_WRITERS),
    key: str = Depends(idempotency_key),
    service: TokenService = Depends(token_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """The contract refuses more than is stray: what open trades hold in escrow is never touched."""
    return _accept(
        store,
        principal,
        "return-stray",
        key,
        body,
        lambda: service.return_stray(
            body.network,
            body.receiver,
            parse_minor(body.amount, TOKENS[body.token].decimals),
            operation_key(principal, "return_stray", key),
            deployment=body.token,
        ),
    )


class HolderOut(BaseModel):
    holder: str = Field(description="the address (lower case, as the ledger names its mirror)")
    client: str | None = Field(description="the client it belongs to, if any")
    chain: str = Field(description="balanceOf on chain, in the token's units")
    ledger: str = Field(description="the ledger's mirror (posted), in the token's units")
    agree: bool


class HoldersPage(BaseModel):
    network: str
    token: str = Field(examples=["deposit_token"])
    symbol: str = Field(examples=["USDD"])
    data: list[HolderOut]
    next_cursor: str | None


@router.get(
    "/tokens/{network}/holders",
    response_model=HoldersPage,
    tags=["tokens"],
    summary="Every holder of a token on a network: its on-chain balance next to the ledger's mirror",
    responses=responses(
        {200: "a page of holders, in the order their mirrors were opened"},
        {
            400: "invalid_cursor: the cursor is not one this API returned",
            404: "unknown_network; token_not_deployed: the token is not deployed on that network",
            422: "invalid_request: a query parameter is out of range (limit is 1 to 1000; token)",
            502: "rpc_error: the node answered the balance reads with an error",
            503: "node_unreachable: the node did not answer",
        },
    ),
)
def holders(
    network: Annotated[str, PathParam(description="the network's name, e.g. internal")],
    principal: Principal = allow(READERS),
    service: TokenService = Depends(token_service),
    token: TokenName = "deposit_token",
    cursor: str | None = None,
    limit: int = Query(100, ge=1, le=1000),
) -> dict[str, Any]:
    """Read at the node's latest block: a transfer not yet final shows as a disagreement until the
    listener books it (reconcile reads at the final block instead)."""
    definition = TOKENS[token]
    chain = service.chain(network)
    address = chain.deployment(token, required=False)
    if address is None:
        raise NotFound(f"{token} is not deployed on {network}", code="token_not_deployed")
    mirrors = service.ledger.list_accounts(
        prefix=holders_prefix(network, definition), after_id=decode_cursor(cursor), limit=limit
    )
    holders = [m.name.rsplit(":", 1)[1] for m in mirrors]
    balances = chain.read_many(address, TOKEN_ABI, [("balanceOf", (h,)) for h in holders]) if holders else []
    return {
        "network": network,
        "token": token,
        "symbol": definition.symbol,
        "data": [
            {
                "holder": holder,
                "client": service.wallet_owner(network, holder),
                "chain": format_minor(balance, definition.decimals),
                "ledger": format_minor(mirror.balance_posted, definition.decimals),
                "agree": balance == mirror.balance_posted,
            }
            for holder, mirror, balance in zip(holders, mirrors, balances, strict=True)
        ],
        "next_cursor": encode_cursor(mirrors[-1].id) if len(mirrors) == limit else None,
    }
