"""The venue port: where the desk sees prices and hedges, named as ccxt's unified API names them.

`fetch_order_book`, `fetch_ticker`, `create_order`, `cancel_order`, `fetch_order`,
`fetch_balance`: the `replay` venue (data files, a clock, fills with slippage) and a `ccxt`
venue (real exchanges through ccxt) answer the same calls. Prices and amounts are exact
Decimals here, whatever the venue speaks (ccxt's floats are converted through their text).
A `clientOrderId` makes `create_order` idempotent: the same id answers the same order.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol, runtime_checkable

from andchain.errors import DomainError, Unavailable


class VenueUnavailable(Unavailable):
    """The venue did not answer, or answered 5xx / a rate limit: nothing is known of the effect."""

    code = "venue_unavailable"


class VenueRefused(DomainError):
    """The venue refused for good (ccxt's InsufficientFunds, InvalidOrder, BadSymbol...)."""

    code = "venue_refused"


class InsufficientFunds(VenueRefused):
    code = "venue_insufficient_funds"


class OrderNotFound(VenueRefused):
    code = "venue_order_not_found"


@dataclass(frozen=True, slots=True)
class OrderBook:
    symbol: str
    bids: list[tuple[Decimal, Decimal]]  # (price, amount), best first
    asks: list[tuple[Decimal, Decimal]]
    timestamp_ms: int

    @property
    def mid(self) -> Decimal | None:
        if not self.bids or not self.asks:
            return None
        return (self.bids[0][0] + self.asks[0][0]) / 2


@dataclass(frozen=True, slots=True)
class Ticker:
    symbol: str
    bid: Decimal | None
    ask: Decimal | None
    last: Decimal | None
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class VenueOrder:
    """An order as the venue reports it (ccxt's unified order structure, the fields the desk uses)."""

    id: str
    client_order_id: str | None
    symbol: str
    type: str  # market | limit
    side: str  # buy | sell
    amount: Decimal
    price: Decimal | None
    status: str  # open | closed | canceled | rejected
    filled: Decimal
    remaining: Decimal
    cost: Decimal  # filled x average price, in the quote asset
    average: Decimal | None
    fee: Decimal = Decimal(0)  # in the quote asset
    timestamp_ms: int = 0
    raw: dict[str, Any] = field(default_factory=dict, compare=False, repr=False)


@dataclass(frozen=True, slots=True)
class VenueBalance:
    asset: str
    free: Decimal
    used: Decimal

    @property
    def total(self) -> Decimal:
        return self.free + self.used


@runtime_checkable
class Venue(Protocol):
    name: str

    def fetch_order_book(self, symbol: str, limit: int | None = None) -> OrderBook: ...

    def fetch_ticker(self, symbol: str) -> Ticker: ...

    def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: Decimal,
        price: Decimal | None = None,
        params: dict[str, Any] | None = None,
    ) -> VenueOrder: ...

    def cancel_order(self, id: str, symbol: str | None = None) -> VenueOrder: ...

    def fetch_order(self, id: str, symbol: str | None = None) -> VenueOrder: ...

    def find_order(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """The order sent under `client_order_id`, or None if the venue has none: asked before an order
        whose first sending may have reached the venue is sent again."""
        ...

    def fetch_balance(self) -> dict[str, VenueBalance]: ...


def sweep(levels: list[tuple[Decimal, Decimal]], amount: Decimal) -> tuple[Decimal, Decimal]:
    """Walk `levels` (best first) for `amount`: (what they fill, its cost). What a market order of
    that size costs on that book, before any slippage beyond its depth."""
    left, cost = amount, Decimal(0)
    for price, size in levels:
        take = size if size < left else left
        cost += take * price
        left -= take
        if not left:
            break
    return amount - left, cost
