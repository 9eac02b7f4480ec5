"""/v1/desk: the trading desk's quotes (RFQ), their acceptance, its positions, its state, its clients' tiers.

A quote is a firm price for a size, open for `trading.quote_ttl_s`; accepting it records the trade
(an operation, `desk_trade`) with the hold on the client's cash (or its deposit tokens' redemption,
or its asset at the custodian for a sale): the answer is `202` with the operation and
`Location: /v1/operations/{id}`; the worker executes, delivers and settles it.

Who may call:
- quotes (ask, read, accept): a client for itself; the desk, operator and admin for a client they name;
  the bank's readers read them;
- positions: the desk and the bank's readers;
- the desk's state: everyone with a key reads it; the desk and admin change it;
- orders (place, read, cancel, amend): a client for itself; the desk, operator and admin for a client
  they name; the bank's readers read them;
- a book's depth: everyone with a key (no owners are shown);
- tiers: the desk and admin set a client's, the bank's readers read them.
"""

from __future__ import annotations

import hashlib
from typing import Any, Literal

from fastapi import APIRouter, Depends, Query, Request
from fastapi import Path as PathParam
from pydantic import BaseModel, ConfigDict, Field
from starlette.concurrency import run_in_threadpool

from andchain.api.auth import BANK_WRITERS, EVERYONE, READERS, Principal, Role, allow
from andchain.api.body import StrictJSONRoute
from andchain.api.deps import app_service, context, idempotency
from andchain.api.idempotency import IdempotencyStore, idempotency_key
from andchain.api.problems import ApiProblem, responses
from andchain.api.routers.common import (
    CLIENT_DESCRIPTION,
    CLIENT_REF_LENGTH_MAX,
    NETWORK_LENGTH_MAX,
    OperationOut,
    accepted,
    accepted_responses,
    operation_view,
    own_client,
)
from andchain.api.routers.custody import custody_service
from andchain.api.routers.ledger import idempotent, scoped
from andchain.custody.service import CustodyService
from andchain.trading.desk import DeskService
from andchain.trading.orders import OrderBooks
from andchain.trading.risk import GLOBAL, TradingState

router = APIRouter(prefix="/v1", route_class=StrictJSONRoute)

DESK_READERS = frozenset({*READERS, Role.DESK})
DESK_WRITERS = frozenset({*BANK_WRITERS, Role.DESK})
DECIMAL_PATTERN = r"^[0-9]{1,20}(\.[0-9]{1,18})?$"
SYMBOL_FIELD = Field(min_length=3, max_length=32, pattern=r"^[A-Z0-9]{1,15}-[A-Z0-9]{1,15}$", examples=["BTC-USD"])

_REFUSED = {
    404: "client_not_found, quote_not_found (also another client's, for a client key), instrument_not_found",
    409: "quote_expired (ask again), quote_not_open",
    422: (
        "a refusal with its stable code: a risk denial (trading_halted, reducing_only, instrument_not_allowed, "
        "order_notional_exceeded, daily_notional_exceeded, rate_limited, price_out_of_band, position_limit, "
        "gross_exposure_limit, daily_loss_limit), insufficient_funds, insufficient_liquidity, excess_precision, "
        "size_out_of_range, notional_out_of_range, instrument_not_settled, client_not_active, ..."
    ),
    503: "venue_unavailable, custodian_unavailable: nothing was recorded; ask again",
}


def desk_service(request: Request, custody: CustodyService = Depends(custody_service)) -> DeskService:
    return app_service(request, "desk", lambda: DeskService(context(request), custody=custody))


def order_books(request: Request, desk: DeskService = Depends(desk_service)) -> OrderBooks:
    return app_service(request, "order_books", lambda: OrderBooks(desk))


def _client(principal: Principal, desk: DeskService, ref: str | None) -> str:
    """Whom a request acts for: a client key its own client, a bank role the client it names."""
    own = own_client(principal)
    if own is not None:
        if ref is not None and desk.clients.client(ref).id != own:
            raise ApiProblem(404, "client_not_found", f"no client {ref!r}")
        return own
    if ref is None:
        message = "the bank's roles name the client"
        raise ApiProblem(
            422,
            "invalid_request",
            f"the request is not valid: body.client: {message}",
            errors=[{"location": "body.client", "message": message}],
        )
    return desk.clients.client(ref).id


class QuoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    client: str | None = Field(
        default=None, min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description=CLIENT_DESCRIPTION
    )
    instrument: str = SYMBOL_FIELD
    side: Literal["buy", "sell"] = Field(description="the client's side")
    quantity: str | None = Field(
        default=None, pattern=DECIMAL_PATTERN, description="in the base asset (or give `notional`)", examples=["0.5"]
    )
    notional: str | None = Field(
        default=None, pattern=DECIMAL_PATTERN, description="in USD (or give `quantity`)", examples=["25000.00"]
    )
    pay_with: Literal["usd", "deposit_token"] = Field(
        default="usd", description="a buy is paid from the client's deposit account, or in its deposit tokens"
    )
    network: str | None = Field(
        default=None, min_length=1, max_length=NETWORK_LENGTH_MAX, description="the deposit tokens' network"
    )


class QuoteOut(BaseModel):
    id: str
    client: str
    instrument: str
    side: str
    quantity: str
    price: str = Field(description="USD per unit, firm until expires_at")
    notional: str = Field(description="USD the client pays (buy) or receives (sell)")
    pay_with: str
    network: str | None
    custodian: str = Field(description="where the asset is delivered (an internal transfer)")
    status: str = Field(description="open, accepted, settled, failed, expired")
    created_at: str
    expires_at: str
    decided_at: str | None
    trade: str | None = Field(description="the desk_trade operation, once accepted")


class QuotesOut(BaseModel):
    data: list[QuoteOut]


class PositionRowOut(BaseModel):
    asset: str
    place: str = Field(description="custodian:<name> or venue:<name>")
    quantity: str
    average_cost: str | None
    realised_pnl: str
    unrealised_pnl: str | None
    mark: str | None


class PositionsOut(BaseModel):
    positions: list[PositionRowOut]
    net: dict[str, str]
    marks: dict[str, str]
    realised_pnl: str
    unrealised_pnl: str
    held_at_custodians: dict[str, dict[str, Any]]


class StateIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    state: Literal["active", "reducing", "halted"]
    reason: str = Field(min_length=1, max_length=2000)
    instrument: str | None = Field(default=None, min_length=3, max_length=32)


class StateOut(BaseModel):
    scope: str = Field(description="desk, or an instrument")
    state: str
    reason: str


class StatesOut(BaseModel):
    data: list[StateOut]


class TierIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    tier: str = Field(min_length=1, max_length=32, examples=["professional"])


class TierOut(BaseModel):
    client: str
    tier: str


@router.post(
    "/desk/quotes",
    status_code=201,
    response_model=QuoteOut,
    tags=["desk"],
    summary="Ask the desk for a firm price (RFQ)",
    openapi_extra=idempotent(),
    responses=responses({201: "the quote, open until expires_at"}, _REFUSED, post=True),
)
async def ask_quote(
    body: QuoteIn,
    principal: Principal = allow(DESK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    desk: DeskService = Depends(desk_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """Priced from the venue's book for that size plus the client's tier spread, rounded against the
    client to the tick; checked against the bank's risk appetite (a denial is an event too). Nothing is
    held until the quote is accepted."""

    def call() -> tuple[int, dict[str, Any]]:
        client = _client(principal, desk, body.client)
        quote = desk.quote(
            client, body.instrument, body.side, quantity=body.quantity, notional=body.notional,
            pay_with=body.pay_with, network=body.network,
        )  # fmt: skip
        return 201, quote.view(desk.ctx.clock())

    scope = scoped(principal, "POST /v1/desk/quotes")
    return await run_in_threadpool(store.run, scope, key, body.model_dump(mode="json"), call)


@router.get(
    "/desk/quotes",
    response_model=QuotesOut,
    tags=["desk"],
    summary="Quotes, newest first",
    responses=responses({200: "the quotes"}, {404: "client_not_found (also another client's, for a client key)"}),
)
def list_quotes(
    client: str | None = Query(None, max_length=CLIENT_REF_LENGTH_MAX, description=CLIENT_DESCRIPTION),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = allow(DESK_READERS, Role.CLIENT),
    desk: DeskService = Depends(desk_service),
) -> Any:
    own = own_client(principal)
    wanted = _client(principal, desk, client) if own is not None or client is not None else None
    now = desk.ctx.clock()
    return {"data": [q.view(now) for q in desk.quotes(client=wanted, limit=limit)]}


@router.get(
    "/desk/quotes/{quote_id}",
    response_model=QuoteOut,
    tags=["desk"],
    summary="One quote",
    responses=responses({200: "the quote"}, {404: "quote_not_found (also another client's, for a client key)"}),
)
def get_quote(
    quote_id: str = PathParam(min_length=1, max_length=40),
    principal: Principal = allow(DESK_READERS, Role.CLIENT),
    desk: DeskService = Depends(desk_service),
) -> Any:
    return desk.get_quote(quote_id, client=own_client(principal)).view(desk.ctx.clock())


@router.post(
    "/desk/quotes/{quote_id}/accept",
    status_code=202,
    response_model=OperationOut,
    tags=["desk"],
    summary="Accept a quote: the trade is recorded with what it holds, once",
    openapi_extra=idempotent(),
    responses=accepted_responses(_REFUSED),
)
async def accept_quote(
    quote_id: str = PathParam(min_length=1, max_length=40),
    principal: Principal = allow(DESK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    desk: DeskService = Depends(desk_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """Decided once: accepted while the quote is open and unexpired, in the transaction that records the
    trade and its hold. The same quote accepted again (under any key) answers the same trade. An
    expired quote answers 409 quote_expired."""

    def call() -> tuple[int, dict[str, Any]]:
        return 202, operation_view(desk.accept(quote_id, client=own_client(principal)))

    scope = scoped(principal, "POST /v1/desk/quotes/{quote_id}/accept")
    return accepted(await run_in_threadpool(store.run, scope, key, {"quote": quote_id}, call))


@router.get(
    "/desk/positions",
    response_model=PositionsOut,
    tags=["desk"],
    summary="The desk's positions per asset and place, average cost, realised and unrealised P&L",
    responses=responses({200: "the positions, marked to the venue's mid"}, {503: "venue_unavailable"}),
)
def desk_positions(principal: Principal = allow(DESK_READERS), desk: DeskService = Depends(desk_service)) -> Any:
    return desk.positions_view()


@router.get(
    "/desk/state",
    response_model=StatesOut,
    tags=["desk"],
    summary="The desk's trading state, and each instrument's own",
    responses=responses({200: "the states (active when none is recorded)"}),
)
def desk_state(principal: Principal = allow(EVERYONE), desk: DeskService = Depends(desk_service)) -> Any:
    states = desk.states.all()
    rows = [{"scope": "desk", "state": TradingState.ACTIVE.value, "reason": ""}] if GLOBAL not in states else []
    for scope, (state, reason) in sorted(states.items()):
        rows.append({"scope": "desk" if scope == GLOBAL else scope, "state": state.value, "reason": reason})
    return {"data": rows}


@router.post(
    "/desk/state",
    response_model=StateOut,
    tags=["desk"],
    summary="Halt, reduce or resume the desk or one instrument",
    openapi_extra=idempotent(),
    responses=responses({200: "the state set"}, {404: "instrument_not_found"}, post=True),
)
def set_desk_state(
    body: StateIn,
    principal: Principal = allow(Role.DESK, Role.ADMIN),
    key: str = Depends(idempotency_key),
    desk: DeskService = Depends(desk_service),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """Halted refuses every new trade; reducing takes only trades that reduce the desk's position in the
    asset. Trades accepted before go on. Every change is an event (`desk.state_changed`)."""

    def call() -> tuple[int, dict[str, Any]]:
        scope = desk.instruments.get(body.instrument).symbol if body.instrument else GLOBAL
        desk.states.set(TradingState(body.state), scope=scope, reason=body.reason, by=f"api:{principal.key_id}")
        return 200, {"scope": "desk" if scope == GLOBAL else scope, "state": body.state, "reason": body.reason}

    return store.run(scoped(principal, "POST /v1/desk/state"), key, body.model_dump(mode="json"), call)


@router.put(
    "/desk/tiers/{client}",
    response_model=TierOut,
    tags=["desk"],
    summary="Set a client's trading tier (its limits, instruments and spread)",
    responses=responses({200: "the tier set"}, {404: "client_not_found", 422: "unknown_tier"}, post=True),
)
def set_tier(
    body: TierIn,
    client: str = PathParam(min_length=1, max_length=CLIENT_REF_LENGTH_MAX),
    principal: Principal = allow(Role.DESK, Role.ADMIN),
    desk: DeskService = Depends(desk_service),
) -> Any:
    client_id = desk.set_tier(client, body.tier, by=f"api:{principal.key_id}")
    return {"client": client_id, "tier": body.tier}


@router.get(
    "/desk/tiers/{client}",
    response_model=TierOut,
    tags=["desk"],
    summary="A client's trading tier",
    responses=responses({200: "the tier (the default when none is set)"}, {404: "client_not_found"}),
)
def get_tier(
    client: str = PathParam(min_length=1, max_length=CLIENT_REF_LENGTH_MAX),
    principal: Principal = allow(DESK_READERS, Role.CLIENT),
    desk: DeskService = Depends(desk_service),
) -> Any:
    own = own_client(principal)
    client_id = desk.clients.client(client).id
    if own is not None and client_id != own:
        raise ApiProblem(404, "client_not_found", f"no client {client!r}")
    return {"client": client_id, "tier": desk.tier_of(client_id)}


class OrderIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    client: str | None = Field(
        default=None, min_length=1, max_length=CLIENT_REF_LENGTH_MAX, description=CLIENT_DESCRIPTION
    )
    instrument: str = SYMBOL_FIELD
    side: Literal["buy", "sell"]
    quantity: str = Field(pattern=DECIMAL_PATTERN, description="in the base asset", examples=["0.5"])
    price: str | None = Field(
        default=None, pattern=DECIMAL_PATTERN, description="the limit (USD per unit); none: a market order"
    )
    time_in_force: Literal["gtc", "ioc", "fok"] = "gtc"
    post_only: bool = False
    route: bool = Field(
        default=False,
        description="what the book cannot fill at once (IOC, market) trades with the desk at the venue's price",
    )
    client_order_id: str | None = Field(default=None, min_length=1, max_length=64)


class AmendIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)

    quantity: str | None = Field(default=None, pattern=DECIMAL_PATTERN, description="the new total, fills included")
    price: str | None = Field(default=None, pattern=DECIMAL_PATTERN)


class OrderTradeOut(BaseModel):
    with_: str = Field(alias="with", description="book (another client's order) or desk (routed)")
    price: str
    quantity: str
    trade: str = Field(description="the client's desk_trade operation")


class OrderOut(BaseModel):
    id: str
    client_order_id: str
    client: str
    instrument: str
    side: str
    type: str = Field(description="limit or market")
    time_in_force: str
    post_only: bool
    route: bool
    price: str | None
    quantity: str
    filled: str
    remaining: str
    status: str = Field(description="open, filled, cancelled, rejected")
    reason: str | None
    created_at: str
    updated_at: str


class PlacedOut(OrderOut):
    trades: list[OrderTradeOut] = Field(description="the trades this request made")
    replayed: bool = Field(description="true: the same client order id answered the order placed before")


class OrdersOut(BaseModel):
    data: list[OrderOut]


class DepthOut(BaseModel):
    instrument: str
    bids: list[list[str]] = Field(description="[price, quantity], best first")
    asks: list[list[str]]


_ORDER_REFUSED = {
    **_REFUSED,
    404: "client_not_found, order_not_found (also another client's, for a client key), instrument_not_found",
    409: "order_not_open, idempotency_key_reused (a client order id used for another order)",
}


@router.post(
    "/desk/orders",
    status_code=201,
    response_model=PlacedOut,
    response_model_by_alias=True,
    tags=["desk"],
    summary="Place an order on the desk's book",
    openapi_extra=idempotent(),
    responses=responses({201: "the order as it stands, and the trades it made"}, _ORDER_REFUSED, post=True),
)
async def place_order(
    body: OrderIn,
    principal: Principal = allow(DESK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    books: OrderBooks = Depends(order_books),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """Matched at once by price, then time, against other clients' orders; each match is a trade of each
    client with the desk, settled by the worker. What a GTC limit order does not fill rests (held); an IOC
    or market order's remainder is cancelled, or with `route` traded with the desk at the venue's price."""

    def call() -> tuple[int, dict[str, Any]]:
        client = _client(principal, books.desk, body.client)
        # None given: one derived from the caller's key and the Idempotency-Key, so that a retry whose
        # first answer was lost finds the order it placed.
        order_id = (
            body.client_order_id or "key-" + hashlib.sha256(f"{principal.key_id}\x00{key}".encode()).hexdigest()[:40]
        )
        placed = books.place(
            client, body.instrument, body.side, body.quantity, price=body.price, tif=body.time_in_force,
            post_only=body.post_only, route=body.route, client_order_id=order_id,
        )  # fmt: skip
        return 201, placed.view()

    scope = scoped(principal, "POST /v1/desk/orders")
    return await run_in_threadpool(store.run, scope, key, body.model_dump(mode="json"), call)


@router.get(
    "/desk/orders",
    response_model=OrdersOut,
    tags=["desk"],
    summary="Orders, newest first",
    responses=responses({200: "the orders"}, {404: "client_not_found (also another client's, for a client key)"}),
)
def list_orders(
    client: str | None = Query(None, max_length=CLIENT_REF_LENGTH_MAX, description=CLIENT_DESCRIPTION),
    instrument: str | None = Query(None, max_length=32),
    status: Literal["open", "filled", "cancelled", "rejected"] | None = Query(None),
    limit: int = Query(100, ge=1, le=1000),
    principal: Principal = allow(DESK_READERS, Role.CLIENT),
    books: OrderBooks = Depends(order_books),
) -> Any:
    own = own_client(principal)
    wanted = _client(principal, books.desk, client) if own is not None or client is not None else None
    return {"data": [o.view() for o in books.list(client=wanted, instrument=instrument, status=status, limit=limit)]}


@router.get(
    "/desk/orders/{order_id}",
    response_model=OrderOut,
    tags=["desk"],
    summary="One order",
    responses=responses({200: "the order"}, {404: "order_not_found (also another client's, for a client key)"}),
)
def get_order(
    order_id: str = PathParam(min_length=1, max_length=19, pattern=r"^[0-9]+$"),
    principal: Principal = allow(DESK_READERS, Role.CLIENT),
    books: OrderBooks = Depends(order_books),
) -> Any:
    return books.get(order_id, client=own_client(principal)).view()


@router.post(
    "/desk/orders/{order_id}/cancel",
    response_model=OrderOut,
    tags=["desk"],
    summary="Cancel a resting order: what it holds is released",
    openapi_extra=idempotent(),
    responses=responses({200: "the order, cancelled"}, _ORDER_REFUSED, post=True),
)
def cancel_order(
    order_id: str = PathParam(min_length=1, max_length=19, pattern=r"^[0-9]+$"),
    principal: Principal = allow(DESK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    books: OrderBooks = Depends(order_books),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    def call() -> tuple[int, dict[str, Any]]:
        return 200, books.cancel(order_id, client=own_client(principal)).view()

    return store.run(scoped(principal, "POST /v1/desk/orders/{order_id}/cancel"), key, {"order": order_id}, call)


@router.post(
    "/desk/orders/{order_id}/amend",
    response_model=PlacedOut,
    response_model_by_alias=True,
    tags=["desk"],
    summary="Amend a resting limit order's quantity or price",
    openapi_extra=idempotent(),
    responses=responses({200: "the order as it stands, and the trades the amendment made"}, _ORDER_REFUSED, post=True),
)
def amend_order(
    body: AmendIn,
    order_id: str = PathParam(min_length=1, max_length=19, pattern=r"^[0-9]+$"),
    principal: Principal = allow(DESK_WRITERS, Role.CLIENT),
    key: str = Depends(idempotency_key),
    books: OrderBooks = Depends(order_books),
    store: IdempotencyStore = Depends(idempotency),
) -> Any:
    """A smaller quantity at the same price keeps the order's place; a new price or a larger quantity
    sends it to the back of its level, where it may match at once. Its hold follows."""

    def call() -> tuple[int, dict[str, Any]]:
        placed = books.amend(order_id, quantity=body.quantity, price=body.price, client=own_client(principal))
        return 200, placed.view()

    payload = {"order": order_id, **body.model_dump(mode="json")}
    return store.run(scoped(principal, "POST /v1/desk/orders/{order_id}/amend"), key, payload, call)


@router.get(
    "/desk/books/{instrument}",
    response_model=DepthOut,
    tags=["desk"],
    summary="What rests on the desk's book, per price level",
    responses=responses({200: "the depth (no owners)"}, {404: "instrument_not_found"}),
)
def book_depth(
    instrument: str = PathParam(min_length=3, max_length=32),
    levels: int = Query(10, ge=1, le=100),
    principal: Principal = allow(EVERYONE),
    books: OrderBooks = Depends(order_books),
) -> Any:
    return books.depth(instrument, levels)
