"""The `ccxt` venue: a real exchange through ccxt's unified API, behind the venue port.

ccxt answers floats (and, for some exchanges, strings); every number crosses into the desk
through its text into a Decimal, never through binary arithmetic. ccxt's errors are sorted as
the port's: `InsufficientFunds`, `OrderNotFound`, the other refusals (`InvalidOrder`,
`BadSymbol`, `AuthenticationError`, `PermissionDenied`, any `ExchangeError`) as `VenueRefused`,
and a network or exchange that does not answer (`NetworkError`, `RequestTimeout`,
`ExchangeNotAvailable`, `DDoSProtection`, `RateLimitExceeded`) as `VenueUnavailable`, whose
effect is unknown: an order is then looked up by its `clientOrderId` before it is sent again.

ccxt is not a dependency of andchain's core (`pip install 'andchain[venues]'`): `connect` imports it
when a ccxt venue is built. The tests drive the adapter with responses recorded in ccxt's unified
structures, never a live exchange.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from andchain.trading.venues.port import (
    InsufficientFunds,
    OrderBook,
    OrderNotFound,
    Ticker,
    VenueBalance,
    VenueOrder,
    VenueRefused,
    VenueUnavailable,
)

# ccxt's error classes by name (its hierarchy: NetworkError and its subclasses are transient).
UNAVAILABLE = frozenset(
    {"NetworkError", "RequestTimeout", "ExchangeNotAvailable", "DDoSProtection", "RateLimitExceeded", "OnMaintenance"}
)
INSUFFICIENT = frozenset({"InsufficientFunds"})
NOT_FOUND = frozenset({"OrderNotFound"})


def exact(value: Any) -> Decimal | None:
    """A ccxt number as an exact Decimal (through its text: 0.1 stays 0.1), None for None."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise VenueRefused(f"the venue answered a boolean where a number was expected: {value!r}")
    return Decimal(str(value))


def _kinds(exc: BaseException) -> set[str]:
    return {cls.__name__ for cls in type(exc).__mro__}


def sorted_error(exc: BaseException) -> Exception:
    kinds = _kinds(exc)
    message = f"{type(exc).__name__}: {exc}"[:500]
    if kinds & INSUFFICIENT:
        return InsufficientFunds(message)
    if kinds & NOT_FOUND:
        return OrderNotFound(message)
    if kinds & UNAVAILABLE:
        return VenueUnavailable(message)
    return VenueRefused(message)


def connect(exchange_id: str, config: dict[str, Any]) -> Any:
    """A ccxt exchange instance (`ccxt.<exchange_id>(config)`), with its rate limiter on."""
    try:
        import ccxt  # type: ignore[import-not-found,import-untyped,unused-ignore]
    except ImportError:
        raise VenueRefused(
            "the ccxt venue needs ccxt: pip install 'andchain[venues]'", code="venue_not_installed"
        ) from None
    factory = getattr(ccxt, exchange_id, None)
    if factory is None:
        raise VenueRefused(f"ccxt has no exchange {exchange_id!r}", code="venue_unknown")
    return factory({"enableRateLimit": True, **config})


class CcxtVenue:
    def __init__(self, exchange: Any, name: str | None = None) -> None:
        self.exchange = exchange
        self.name = name or str(getattr(exchange, "id", "ccxt"))

    def _call(self, method: str, *args: Any) -> Any:
        try:
            return getattr(self.exchange, method)(*args)
        except Exception as exc:
            if type(exc).__module__.split(".")[0] != "ccxt" and not any(
                k in _kinds(exc) for k in (*UNAVAILABLE, *INSUFFICIENT, *NOT_FOUND, "ExchangeError", "BaseError")
            ):
                raise  # not the exchange's answer: a bug here, never taken for a refusal
            raise sorted_error(exc) from exc

    def fetch_order_book(self, symbol: str, limit: int | None = None) -> OrderBook:
        book = self._call("fetch_order_book", _pair(symbol), limit)
        return OrderBook(
            symbol,
            [(_num(p), _num(q)) for p, q, *_ in book.get("bids") or []],
            [(_num(p), _num(q)) for p, q, *_ in book.get("asks") or []],
            int(book.get("timestamp") or 0),
        )

    def fetch_ticker(self, symbol: str) -> Ticker:
        t = self._call("fetch_ticker", _pair(symbol))
        return Ticker(
            symbol, exact(t.get("bid")), exact(t.get("ask")), exact(t.get("last")), int(t.get("timestamp") or 0)
        )

    def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: Decimal,
        price: Decimal | None = None,
        params: dict[str, Any] | None = None,
    ) -> VenueOrder:
        # ccxt takes floats: the amount and price are already whole lots and ticks of the instrument,
        # which a float renders back to the same text at these magnitudes (checked below).
        as_float = float(amount)
        if Decimal(str(as_float)) != amount:
            raise VenueRefused(f"{amount} cannot be sent to ccxt exactly", code="venue_precision")
        order = self._call(
            "create_order", _pair(symbol), type, side, as_float, None if price is None else float(price), params or {}
        )
        return self._order(order, symbol)

    def cancel_order(self, id: str, symbol: str | None = None) -> VenueOrder:
        return self._order(self._call("cancel_order", id, _pair(symbol) if symbol else None), symbol)

    def fetch_order(self, id: str, symbol: str | None = None) -> VenueOrder:
        return self._order(self._call("fetch_order", id, _pair(symbol) if symbol else None), symbol)

    def find_order(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        """ccxt has no unified look-up by client order id: the recent orders of the symbol are read
        (`fetch_orders`, or the open and the closed ones where the exchange lists them apart)."""
        has = getattr(self.exchange, "has", None) or {}
        methods = ["fetch_orders"] if has.get("fetchOrders") else ["fetch_open_orders", "fetch_closed_orders"]
        for method in methods:
            for order in self._call(method, _pair(symbol)) or []:
                if order.get("clientOrderId") == client_order_id:
                    return self._order(order, symbol)
        return None

    def fetch_balance(self) -> dict[str, VenueBalance]:
        balance = self._call("fetch_balance")
        out = {}
        for asset, free in (balance.get("free") or {}).items():
            used = (balance.get("used") or {}).get(asset)
            out[asset] = VenueBalance(asset, exact(free) or Decimal(0), exact(used) or Decimal(0))
        return out

    def _order(self, o: dict[str, Any], symbol: str | None) -> VenueOrder:
        filled = exact(o.get("filled")) or Decimal(0)
        amount = exact(o.get("amount")) or Decimal(0)
        fee = o.get("fee") or {}
        fee_cost = exact(fee.get("cost")) or Decimal(0)
        ours = symbol or _ours(str(o.get("symbol", "")))
        base = ours.split("-")[0]
        average = exact(o.get("average"))
        if fee.get("currency") == base and fee_cost:
            # Charged in the base asset: the port speaks of fees in the quote asset.
            fee_cost = fee_cost * (average or exact(o.get("price")) or Decimal(0))
        return VenueOrder(
            id=str(o["id"]),
            client_order_id=o.get("clientOrderId"),
            symbol=symbol or _ours(str(o.get("symbol", ""))),
            type=str(o.get("type") or ""),
            side=str(o.get("side") or ""),
            amount=amount,
            price=exact(o.get("price")),
            status=str(o.get("status") or "open"),
            filled=filled,
            remaining=_num(o["remaining"]) if o.get("remaining") is not None else amount - filled,
            cost=exact(o.get("cost")) or Decimal(0),
            average=average,
            fee=fee_cost,
            timestamp_ms=int(o.get("timestamp") or 0),
            raw=o,
        )


def _num(value: Any) -> Decimal:
    found = exact(value)
    if found is None:
        raise VenueRefused("the venue answered a level without a number")
    return found


def _pair(symbol: str) -> str:
    """andchain's BTC-USD is ccxt's BTC/USD."""
    return symbol.replace("-", "/")


def _ours(symbol: str) -> str:
    return symbol.replace("/", "-")
