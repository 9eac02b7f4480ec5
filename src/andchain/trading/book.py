"""A client order book: limit and market orders matched in-process by price, then time.

Prices and quantities are integers here (ticks and lots of the instrument: `Instrument` converts
exact decimals to and from them at the edges), so that matching never rounds and runs fast.

Each side keeps its price levels in a dict (price -> the level's orders, oldest first: a dict
keeps insertion order and deletes in O(1)) and its prices in a sorted list whose last element is
the best (bids by price, asks by minus price), so the best level is reached in O(1) and a new
level is placed by bisection.

Rules:
- time in force: GTC rests what is not filled; IOC cancels it; FOK fills whole at once or not at
  all (checked before anything is matched); a market order (no price) takes what the book has
  and returns the rest, for the caller to route elsewhere or cancel;
- post-only: an order that would take liquidity is refused whole (`would_take`), never matched;
- self-trade prevention: an order never fills against its owner's resting order; that resting
  order is cancelled (the newer instruction wins) and matching goes on;
- amend: a smaller quantity at the same price keeps the order's place; a new price or a larger
  quantity is a new order at the back of its level (it may match at once).
"""

from __future__ import annotations

import enum
from bisect import bisect_left, insort
from dataclasses import dataclass, field


class Side(enum.IntEnum):
    BUY = 0
    SELL = 1


class TimeInForce(enum.StrEnum):
    GTC = "gtc"
    IOC = "ioc"
    FOK = "fok"


class Status(enum.StrEnum):
    RESTING = "resting"  # on the book (possibly after some fills)
    FILLED = "filled"
    CANCELLED = "cancelled"  # what was not filled was cancelled (IOC, market, FOK, self-trade)
    REJECTED = "rejected"  # nothing happened (post-only would take, FOK could not fill, bad input)


@dataclass(slots=True)
class Order:
    id: int
    owner: str
    side: Side
    price: int | None
    quantity: int
    remaining: int
    tif: TimeInForce
    post_only: bool
    seq: int


@dataclass(frozen=True, slots=True)
class Fill:
    maker: int
    taker: int
    maker_owner: str
    taker_owner: str
    price: int
    quantity: int
    taker_side: Side


@dataclass(slots=True)
class Result:
    order: int
    status: Status
    fills: list[Fill] = field(default_factory=list)
    remaining: int = 0  # not filled (resting when RESTING; cancelled or to route otherwise)
    reason: str | None = None
    # Resting orders of the same owner cancelled by self-trade prevention.
    cancelled: list[int] = field(default_factory=list)

    @property
    def filled(self) -> int:
        return sum(f.quantity for f in self.fills)


class BookError(ValueError):
    """Bad input to the book (a duplicate id, a non-positive quantity or price)."""


class Book:
    def __init__(self, symbol: str = "") -> None:
        self.symbol = symbol
        self.orders: dict[int, Order] = {}
        self._levels: tuple[dict[int, dict[int, Order]], dict[int, dict[int, Order]]] = ({}, {})
        # Sorted keys, best last: bids by price, asks by minus price.
        self._keys: tuple[list[int], list[int]] = ([], [])
        self._seq = 0

    # ------------------------------------------------------------------ reads

    def best(self, side: Side) -> int | None:
        keys = self._keys[side]
        if not keys:
            return None
        return keys[-1] if side is Side.BUY else -keys[-1]

    def best_bid(self) -> int | None:
        return self.best(Side.BUY)

    def best_ask(self) -> int | None:
        return self.best(Side.SELL)

    def depth(self, side: Side, levels: int = 10) -> list[tuple[int, int]]:
        """The best `levels` price levels of a side: (price, quantity resting there)."""
        out = []
        book = self._levels[side]
        for key in reversed(self._keys[side][-levels:] if levels else self._keys[side]):
            price = key if side is Side.BUY else -key
            out.append((price, sum(o.remaining for o in book[price].values())))
        return out

    def __len__(self) -> int:
        return len(self.orders)

    # ------------------------------------------------------------------ writes

    def submit(
        self,
        order_id: int,
        owner: str,
        side: Side,
        quantity: int,
        price: int | None = None,
        tif: TimeInForce = TimeInForce.GTC,
        post_only: bool = False,
    ) -> Result:
        if order_id in self.orders:
            raise BookError(f"order {order_id} is already on the book")
        if type(quantity) is not int or quantity <= 0:
            raise BookError(f"a quantity is a positive integer of lots, was {quantity!r}")
        if price is not None and (type(price) is not int or price <= 0):
            raise BookError(f"a price is a positive integer of ticks, was {price!r}")
        if price is None and post_only:
            return Result(order_id, Status.REJECTED, remaining=quantity, reason="post_only_needs_a_price")
        opposite = Side.SELL if side is Side.BUY else Side.BUY
        best = self.best(opposite)
        crosses = best is not None and (price is None or (best <= price if side is Side.BUY else best >= price))
        if post_only and crosses:
            return Result(order_id, Status.REJECTED, remaining=quantity, reason="would_take")
        if tif is TimeInForce.FOK and self._available(owner, opposite, price, quantity) < quantity:
            return Result(order_id, Status.REJECTED, remaining=quantity, reason="cannot_fill_whole")
        self._seq += 1
        order = Order(order_id, owner, side, price, quantity, quantity, tif, post_only, self._seq)
        result = Result(order_id, Status.FILLED)
        if crosses:
            self._match(order, opposite, result)
        result.remaining = order.remaining
        if order.remaining == 0:
            result.status = Status.FILLED
        elif price is None or tif is not TimeInForce.GTC:
            result.status = Status.CANCELLED
        else:
            self._rest(order)
            result.status = Status.RESTING
        return result

    def cancel(self, order_id: int) -> Order | None:
        """Take a resting order off the book; None when it is not there (filled, cancelled, unknown)."""
        order = self.orders.pop(order_id, None)
        if order is None:
            return None
        self._unlink(order)
        return order

    def amend(self, order_id: int, quantity: int | None = None, price: int | None = None) -> Result:
        """Change a resting order's quantity (the total, fills included) or price."""
        order = self.orders.get(order_id)
        if order is None:
            return Result(order_id, Status.REJECTED, reason="not_resting")
        quantity = order.quantity if quantity is None else quantity
        price = order.price if price is None else price
        filled = order.quantity - order.remaining
        if type(quantity) is not int or quantity <= filled:
            return Result(order_id, Status.REJECTED, remaining=order.remaining, reason="quantity_not_above_filled")
        if price == order.price and quantity <= order.quantity:
            order.remaining -= order.quantity - quantity  # smaller, same price: keeps its place
            order.quantity = quantity
            return Result(order_id, Status.RESTING, remaining=order.remaining)
        self.cancel(order_id)
        result = self.submit(order_id, order.owner, order.side, quantity - filled, price, order.tif, order.post_only)
        if order_id in self.orders:
            self.orders[order_id].quantity = quantity  # the total stays the order's whole life
        return result

    # ---------------------------------------------------------------- inside

    def _available(self, owner: str, side: Side, limit: int | None, wanted: int) -> int:
        """What `side` offers up to `limit` to another owner than `owner` (stops once `wanted` is found)."""
        found = 0
        levels = self._levels[side]
        for key in reversed(self._keys[side]):
            price = key if side is Side.BUY else -key
            if limit is not None and (price > limit if side is Side.SELL else price < limit):
                break
            for maker in levels[price].values():
                if maker.owner != owner:
                    found += maker.remaining
                    if found >= wanted:
                        return found
        return found

    def _match(self, taker: Order, side: Side, result: Result) -> None:
        levels = self._levels[side]
        keys = self._keys[side]
        orders = self.orders
        fills = result.fills
        limit = taker.price
        sell = side is Side.SELL
        while taker.remaining and keys:
            price = -keys[-1] if sell else keys[-1]
            if limit is not None and (price > limit if sell else price < limit):
                break
            level = levels[price]
            while taker.remaining and level:
                maker = next(iter(level.values()))
                if maker.owner == taker.owner:
                    del level[maker.id]
                    del orders[maker.id]
                    result.cancelled.append(maker.id)
                    continue
                quantity = maker.remaining if maker.remaining < taker.remaining else taker.remaining
                fills.append(Fill(maker.id, taker.id, maker.owner, taker.owner, price, quantity, taker.side))
                maker.remaining -= quantity
                taker.remaining -= quantity
                if not maker.remaining:
                    del level[maker.id]
                    del orders[maker.id]
            if not level:
                del levels[price]
                keys.pop()

    def _rest(self, order: Order) -> None:
        price = order.price
        assert price is not None
        levels = self._levels[order.side]
        level = levels.get(price)
        if level is None:
            level = levels[price] = {}
            insort(self._keys[order.side], price if order.side is Side.BUY else -price)
        level[order.id] = order
        self.orders[order.id] = order

    def _unlink(self, order: Order) -> None:
        price = order.price
        assert price is not None
        levels = self._levels[order.side]
        level = levels[price]
        del level[order.id]
        if not level:
            del levels[price]
            keys = self._keys[order.side]
            key = price if order.side is Side.BUY else -price
            index = bisect_left(keys, key)
            del keys[index]
