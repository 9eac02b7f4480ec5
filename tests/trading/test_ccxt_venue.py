"""The ccxt venue against responses recorded in ccxt's unified structures (no live exchange): exact
decimals from ccxt's floats, symbols translated, and ccxt's errors sorted as the port's."""

from __future__ import annotations

from decimal import Decimal

import pytest

from andchain.trading.venues.ccxt_venue import CcxtVenue, connect
from andchain.trading.venues.port import InsufficientFunds, OrderNotFound, Venue, VenueRefused, VenueUnavailable

# As ccxt's unified API returns them (docs.ccxt.com: order book, ticker, order, balance structures).
BOOK = {
    "symbol": "BTC/USD",
    "bids": [[64000.1, 0.5], [63999.9, 1.25]],
    "asks": [[64000.2, 0.3]],
    "timestamp": 1_800_000_000_000,
    "nonce": 7,
}
TICKER = {"symbol": "BTC/USD", "bid": 64000.1, "ask": 64000.2, "last": 64000.15, "timestamp": 1_800_000_000_000}
ORDER = {
    "id": "abc-1", "clientOrderId": "hedge-1", "symbol": "BTC/USD", "type": "market", "side": "buy",
    "amount": 0.1, "price": None, "status": "closed", "filled": 0.1, "remaining": 0.0,
    "cost": 6400.02, "average": 64000.2, "fee": {"cost": 6.40002, "currency": "USD"}, "timestamp": 1_800_000_000_123,
}  # fmt: skip
BALANCE = {
    "free": {"USD": 1000.5, "BTC": 0.1},
    "used": {"USD": 0.25, "BTC": 0.0},
    "total": {"USD": 1000.75, "BTC": 0.1},
}


class InsufficientFundsError(Exception):
    pass


# ccxt's class names: the adapter sorts errors by them.
InsufficientFundsError.__name__ = "InsufficientFunds"


class RequestTimeout(Exception):
    pass


class OrderNotFoundError(Exception):
    pass


OrderNotFoundError.__name__ = "OrderNotFound"


class ExchangeError(Exception):
    pass


class InvalidOrder(ExchangeError):  # as in ccxt: an ExchangeError
    pass


class Recorded:
    id = "recorded"

    def __init__(self) -> None:
        self.calls: list[tuple] = []
        self.fail: Exception | None = None

    def _answer(self, name: str, args: tuple, answer: object) -> object:
        self.calls.append((name, *args))
        if self.fail is not None:
            raise self.fail
        return answer

    def fetch_order_book(self, symbol, limit=None):
        return self._answer("fetch_order_book", (symbol, limit), BOOK)

    def fetch_ticker(self, symbol):
        return self._answer("fetch_ticker", (symbol,), TICKER)

    def create_order(self, symbol, type, side, amount, price=None, params=None):
        return self._answer("create_order", (symbol, type, side, amount, price, params), ORDER)

    def cancel_order(self, id, symbol=None):
        return self._answer("cancel_order", (id, symbol), {**ORDER, "status": "canceled"})

    def fetch_order(self, id, symbol=None):
        return self._answer("fetch_order", (id, symbol), ORDER)

    def fetch_balance(self):
        return self._answer("fetch_balance", (), BALANCE)


def test_answers_become_exact_decimals_and_symbols_are_translated():
    exchange = Recorded()
    venue = CcxtVenue(exchange)
    assert isinstance(venue, Venue) and venue.name == "recorded"
    book = venue.fetch_order_book("BTC-USD", 2)
    assert exchange.calls[-1] == ("fetch_order_book", "BTC/USD", 2)
    assert book.bids[0] == (Decimal("64000.1"), Decimal("0.5")) and book.asks == [(Decimal("64000.2"), Decimal("0.3"))]
    assert book.mid == Decimal("64000.15")
    assert venue.fetch_ticker("BTC-USD").last == Decimal("64000.15")
    order = venue.create_order("BTC-USD", "market", "buy", Decimal("0.1"), params={"clientOrderId": "hedge-1"})
    assert exchange.calls[-1] == ("create_order", "BTC/USD", "market", "buy", 0.1, None, {"clientOrderId": "hedge-1"})
    assert (order.symbol, order.filled, order.cost, order.fee) == (
        "BTC-USD",
        Decimal("0.1"),
        Decimal("6400.02"),
        Decimal("6.40002"),
    )
    assert order.average == Decimal("64000.2") and order.client_order_id == "hedge-1"
    assert venue.cancel_order("abc-1", "BTC-USD").status == "canceled"
    balances = venue.fetch_balance()
    assert balances["USD"].total == Decimal("1000.75") and balances["BTC"].free == Decimal("0.1")


def test_ccxt_errors_are_sorted_and_a_bug_is_never_taken_for_a_refusal():
    exchange = Recorded()
    venue = CcxtVenue(exchange)
    for error, expected in (
        (InsufficientFundsError("balance too low"), InsufficientFunds),
        (OrderNotFoundError("no such order"), OrderNotFound),
        (RequestTimeout("read timed out"), VenueUnavailable),
        (InvalidOrder("amount too small"), VenueRefused),
    ):
        exchange.fail = error
        with pytest.raises(expected):
            venue.fetch_order("abc-1", "BTC-USD")
    exchange.fail = KeyError("a bug")
    with pytest.raises(KeyError):
        venue.fetch_balance()
    exchange.fail = None
    with pytest.raises(VenueRefused, match="exactly"):
        venue.create_order("BTC-USD", "market", "buy", Decimal("0.1000000000000000000001"))


def test_connect_says_what_is_missing():
    with pytest.raises(VenueRefused) as missing:
        connect("coinbase", {})
    assert missing.value.code in ("venue_not_installed", "venue_unknown")
