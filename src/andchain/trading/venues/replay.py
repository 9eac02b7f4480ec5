"""The `replay` venue: order books generated from a seed, served on a clock, filled with slippage.

**The data.** For each instrument, `generate` writes one snapshot a second for
`trading.replay.seconds` seconds (a JSON line each: `t`, `bids`, `asks`, best first) from a
seeded random generator, so the same seed always gives the same files:

- the mid follows a geometric random walk with the instrument's annual volatility scaled to one
  second (BTC 60%, ETH 70%, SOL 90%, USDC 0.5%), from a typical starting price;
- the spread is the instrument's typical one in basis points of the mid (BTC 1, ETH 1.5, SOL 3,
  USDC 0.5), never less than a tick: bids rounded down to the tick, asks up;
- `levels` levels a side, each further by max(tick, 0.5 bp of the mid), with sizes that grow
  with the distance from the touch (x1.35 per level) times a lognormal noise (sigma 0.25), from
  a typical top-of-book size (BTC 0.5, ETH 8, SOL 400, USDC 250,000), rounded to the lot.

**The clock.** At a moment `now`, the venue serves snapshot `(now - start) mod seconds`, where
`start` is when its state was first made: a venue running a day sees a day of books.

**Fills.** A market order walks the current snapshot's opposite side for its amount (what the
book lacks is not filled: the order ends `canceled` with what it got) and pays `slippage_bps`
beyond the average it walked; a limit order fills what crosses at once at the book's prices (with
`timeInForce: IOC` the rest is cancelled) and otherwise rests; a resting order fills at its limit
when a later snapshot crosses it (looked at whenever it is fetched). Every fill pays `fee_bps` of
its cost in the quote asset. Balances are the venue's own (configured, then moved by fills); an
order it cannot pay for is refused (`InsufficientFunds`) before anything changes. Orders and
balances are kept in a state file (written whole, then moved into place): a restarted process
finds them, and a `clientOrderId` it has seen answers its order again.
"""

from __future__ import annotations

import contextlib
import fcntl
import gzip
import json
import math
import os
import random
import threading
import time
from collections.abc import Callable, Iterator
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from pathlib import Path
from typing import Any

from andchain.config import ReplayVenueSettings
from andchain.trading.instruments import Instrument, Instruments
from andchain.trading.venues.port import (
    InsufficientFunds,
    OrderBook,
    OrderNotFound,
    Ticker,
    VenueBalance,
    VenueOrder,
    VenueRefused,
    sweep,
)

# symbol: (starting mid, annual volatility, spread in bp, top-of-book size)
PROFILES: dict[str, tuple[str, float, str, str]] = {
    "BTC-USD": ("64000", 0.60, "1", "0.5"),
    "ETH-USD": ("3200", 0.70, "1.5", "8"),
    "SOL-USD": ("150", 0.90, "3", "400"),
    "USDC-USD": ("1", 0.005, "0.5", "250000"),
}
DEFAULT_PROFILE = ("100", 0.80, "5", "100")
SECONDS_PER_YEAR = 365 * 86_400
BP = Decimal("0.0001")


def _round(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    return (value / step).to_integral_value(rounding=rounding) * step


def generate(instrument: Instrument, seed: int, seconds: int, levels: int) -> list[dict[str, Any]]:
    """The snapshots of one instrument (deterministic: the same arguments give the same books)."""
    mid0, vol, spread_bp, top = PROFILES.get(instrument.symbol, DEFAULT_PROFILE)
    rng = random.Random(f"{seed}:{instrument.symbol}")
    sigma = vol / math.sqrt(SECONDS_PER_YEAR)
    tick, lot = instrument.price_increment, instrument.size_increment
    mid = float(mid0)
    snapshots = []
    for t in range(seconds):
        mid *= math.exp(sigma * rng.gauss(0.0, 1.0) - sigma * sigma / 2)
        exact_mid = Decimal(repr(mid))
        half = max(tick / 2, exact_mid * Decimal(spread_bp) * BP / 2)
        step = max(tick, exact_mid * Decimal("0.5") * BP)
        bids, asks = [], []
        for level in range(levels):
            size = Decimal(top) * Decimal(repr(1.35**level * rng.lognormvariate(0.0, 0.25)))
            size = max(lot, _round(size, lot, ROUND_FLOOR))
            bid = _round(exact_mid - half - step * level, tick, ROUND_FLOOR)
            ask = _round(exact_mid + half + step * level, tick, ROUND_CEILING)
            if bid > 0:
                bids.append([str(bid), str(size)])
            asks.append([str(ask), str(size)])
        snapshots.append({"t": t, "bids": _merged(bids, reverse=True), "asks": _merged(asks, reverse=False)})
    return snapshots


def _merged(levels: list[list[str]], *, reverse: bool) -> list[list[str]]:
    """Levels that rounding put on one price, added up; best first."""
    sizes: dict[Decimal, Decimal] = {}
    for price, size in levels:
        sizes[Decimal(price)] = sizes.get(Decimal(price), Decimal(0)) + Decimal(size)
    return [[str(p), str(sizes[p])] for p in sorted(sizes, reverse=reverse)]


class ReplayVenue:
    name = "replay"

    def __init__(
        self,
        settings: ReplayVenueSettings,
        instruments: Instruments,
        directory: Path,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.settings = settings
        self.instruments = instruments
        self.directory = directory
        self.clock = clock
        self.slippage = Decimal(settings.slippage_bps) * BP
        self.fee = Decimal(settings.fee_bps) * BP
        self._books: dict[str, list[dict[str, Any]]] = {}
        self._lock = threading.RLock()
        self._state_file = directory / "state.json"
        self._state = self._load()

    # ------------------------------------------------------------------ data

    def _data_file(self, symbol: str) -> Path:
        return self.directory / f"{symbol}-{self.settings.seed}-{self.settings.seconds}x{self.settings.levels}.jsonl.gz"

    def snapshots(self, symbol: str) -> list[dict[str, Any]]:
        instrument = self.instruments.get(symbol)
        if instrument.symbol not in self._books:
            path = self._data_file(instrument.symbol)
            if not path.exists():
                self.directory.mkdir(parents=True, exist_ok=True)
                rows = generate(instrument, self.settings.seed, self.settings.seconds, self.settings.levels)
                tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
                with gzip.open(tmp, "wt") as out:
                    for row in rows:
                        out.write(json.dumps(row, separators=(",", ":")) + "\n")
                os.replace(tmp, path)
            with gzip.open(path, "rt") as data:
                self._books[instrument.symbol] = [json.loads(line) for line in data]
        return self._books[instrument.symbol]

    def _now_index(self, symbol: str) -> tuple[int, int]:
        books = self.snapshots(symbol)
        now = self.clock()
        return int(now - self._state["start"]) % len(books), int(now * 1000)

    def fetch_order_book(self, symbol: str, limit: int | None = None) -> OrderBook:
        index, now_ms = self._now_index(symbol)
        row = self.snapshots(symbol)[index]
        depth = limit or len(row["bids"])
        return OrderBook(
            self.instruments.get(symbol).symbol,
            [(Decimal(p), Decimal(q)) for p, q in row["bids"][:depth]],
            [(Decimal(p), Decimal(q)) for p, q in row["asks"][:depth]],
            now_ms,
        )

    def fetch_ticker(self, symbol: str) -> Ticker:
        book = self.fetch_order_book(symbol, 1)
        bid = book.bids[0][0] if book.bids else None
        ask = book.asks[0][0] if book.asks else None
        return Ticker(book.symbol, bid, ask, book.mid, book.timestamp_ms)

    # ---------------------------------------------------------------- orders

    def create_order(
        self,
        symbol: str,
        type: str,
        side: str,
        amount: Decimal,
        price: Decimal | None = None,
        params: dict[str, Any] | None = None,
    ) -> VenueOrder:
        params = params or {}
        instrument = self.instruments.get(symbol)
        client_id = params.get("clientOrderId")
        with self._exclusive():
            if client_id is not None and client_id in self._state["clients"]:
                return self._view(self._state["orders"][self._state["clients"][client_id]])
            if type not in ("market", "limit") or side not in ("buy", "sell"):
                raise VenueRefused(f"an order is a market or limit buy or sell, was {type} {side}")
            amount = Decimal(amount)
            if amount <= 0 or (type == "limit" and (price is None or Decimal(price) <= 0)):
                raise VenueRefused("an order needs a positive amount (and a limit order a positive price)")
            book = self.fetch_order_book(symbol)
            levels = book.asks if side == "buy" else book.bids
            limit = None if type == "market" else Decimal(price)  # type: ignore[arg-type]
            crossing = [(p, q) for p, q in levels if limit is None or (p <= limit if side == "buy" else p >= limit)]
            filled, cost = sweep(crossing, amount)
            if type == "market" and filled:
                cost *= 1 + self.slippage if side == "buy" else 1 - self.slippage
            rests = type == "limit" and params.get("timeInForce", "GTC") == "GTC" and filled < amount
            self._check_funds(instrument, side, amount, filled, cost, limit if rests else None)
            order_id = f"r{self._state['next_id']}"
            self._state["next_id"] += 1
            order: dict[str, Any] = {
                "id": order_id,
                "client_order_id": client_id,
                "symbol": instrument.symbol,
                "type": type,
                "side": side,
                "amount": str(amount),
                "price": None if limit is None else str(limit),
                "filled": "0",
                "cost": "0",
                "fee": "0",
                "status": "open",
                "timestamp_ms": book.timestamp_ms,
            }
            self._fill(order, instrument, filled, cost)
            if Decimal(order["filled"]) == amount:
                order["status"] = "closed"
            elif rests:
                self._reserve(instrument, order, +1)
            else:
                order["status"] = "canceled"
            self._state["orders"][order_id] = order
            if client_id is not None:
                self._state["clients"][client_id] = order_id
            self._save()
            return self._view(order)

    def cancel_order(self, id: str, symbol: str | None = None) -> VenueOrder:
        with self._exclusive():
            order = self._order(id)
            self._advance(order)
            if order["status"] == "open":
                self._reserve(self.instruments.get(order["symbol"]), order, -1)
                order["status"] = "canceled"
                self._save()
            return self._view(order)

    def fetch_order(self, id: str, symbol: str | None = None) -> VenueOrder:
        with self._exclusive():
            order = self._order(id)
            if self._advance(order):
                self._save()
            return self._view(order)

    def find_order(self, client_order_id: str, symbol: str) -> VenueOrder | None:
        with self._exclusive():
            order_id = self._state["clients"].get(client_order_id)
            if order_id is None:
                return None
            order = self._order(order_id)
            if self._advance(order):
                self._save()
            return self._view(order)

    def fetch_balance(self) -> dict[str, VenueBalance]:
        with self._exclusive():
            return {a: VenueBalance(a, Decimal(f), Decimal(u)) for a, (f, u) in self._state["balances"].items()}

    # ---------------------------------------------------------------- inside

    def _order(self, order_id: str) -> dict[str, Any]:
        found: dict[str, Any] | None = self._state["orders"].get(order_id)
        if found is None:
            raise OrderNotFound(f"the replay venue has no order {order_id!r}")
        return found

    def _advance(self, order: dict[str, Any]) -> bool:
        """A resting order fills at its limit against what the current book offers through it."""
        if order["status"] != "open":
            return False
        instrument = self.instruments.get(order["symbol"])
        book = self.fetch_order_book(order["symbol"])
        limit = Decimal(order["price"])
        levels = book.asks if order["side"] == "buy" else book.bids
        through = sum((q for p, q in levels if (p <= limit if order["side"] == "buy" else p >= limit)), Decimal(0))
        left = Decimal(order["amount"]) - Decimal(order["filled"])
        take = min(left, through)
        if not take:
            return False
        self._reserve(instrument, order, -1)
        self._fill(order, instrument, take, take * limit)
        if Decimal(order["filled"]) == Decimal(order["amount"]):
            order["status"] = "closed"
        else:
            self._reserve(instrument, order, +1)
        return True

    def _balance(self, asset: str) -> list[Decimal]:
        free, used = self._state["balances"].get(asset, ["0", "0"])
        return [Decimal(free), Decimal(used)]

    def _set(self, asset: str, free: Decimal, used: Decimal) -> None:
        self._state["balances"][asset] = [str(free), str(used)]

    def _check_funds(
        self,
        instrument: Instrument,
        side: str,
        amount: Decimal,
        filled: Decimal,
        cost: Decimal,
        rest_at: Decimal | None,
    ) -> None:
        if side == "buy":
            needed = cost * (1 + self.fee) + ((amount - filled) * rest_at * (1 + self.fee) if rest_at else 0)
            free = self._balance(instrument.quote)[0]
            if needed > free:
                raise InsufficientFunds(f"the replay venue holds {free} {instrument.quote}, the order needs {needed}")
        else:
            free = self._balance(instrument.base)[0]
            needed = amount if rest_at else filled
            if needed > free:
                raise InsufficientFunds(f"the replay venue holds {free} {instrument.base}, the order needs {needed}")

    def _fill(self, order: dict[str, Any], instrument: Instrument, quantity: Decimal, cost: Decimal) -> None:
        if not quantity:
            return
        fee = cost * self.fee
        base_free, base_used = self._balance(instrument.base)
        quote_free, quote_used = self._balance(instrument.quote)
        if order["side"] == "buy":
            self._set(instrument.base, base_free + quantity, base_used)
            self._set(instrument.quote, quote_free - cost - fee, quote_used)
        else:
            self._set(instrument.base, base_free - quantity, base_used)
            self._set(instrument.quote, quote_free + cost - fee, quote_used)
        order["filled"] = str(Decimal(order["filled"]) + quantity)
        order["cost"] = str(Decimal(order["cost"]) + cost)
        order["fee"] = str(Decimal(order["fee"]) + fee)

    def _reserve(self, instrument: Instrument, order: dict[str, Any], sign: int) -> None:
        """Hold (+1) or release (-1) what a resting order's remainder needs."""
        left = Decimal(order["amount"]) - Decimal(order["filled"])
        if order["side"] == "buy":
            asset, amount = instrument.quote, left * Decimal(order["price"]) * (1 + self.fee)
        else:
            asset, amount = instrument.base, left
        free, used = self._balance(asset)
        self._set(asset, free - sign * amount, used + sign * amount)

    def _view(self, order: dict[str, Any]) -> VenueOrder:
        filled, amount, cost = Decimal(order["filled"]), Decimal(order["amount"]), Decimal(order["cost"])
        return VenueOrder(
            id=order["id"],
            client_order_id=order["client_order_id"],
            symbol=order["symbol"],
            type=order["type"],
            side=order["side"],
            amount=amount,
            price=None if order["price"] is None else Decimal(order["price"]),
            status=order["status"],
            filled=filled,
            remaining=amount - filled,
            cost=cost,
            average=cost / filled if filled else None,
            fee=Decimal(order["fee"]),
            timestamp_ms=order["timestamp_ms"],
            raw=dict(order),
        )

    @contextlib.contextmanager
    def _exclusive(self) -> Iterator[None]:
        """This thread alone, and this process alone (a file lock), on the state as last written: two
        processes (two workers) share one venue's orders and balances, and a client order id."""
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.directory / "state.lock", "a+") as lock:
                fcntl.flock(lock, fcntl.LOCK_EX)
                try:
                    self._state = self._load()
                    yield
                finally:
                    fcntl.flock(lock, fcntl.LOCK_UN)

    def _load(self) -> dict[str, Any]:
        try:
            state: dict[str, Any] = json.loads(self._state_file.read_text())
            return state
        except FileNotFoundError:
            fresh = {
                "start": self.clock(),
                "next_id": 1,
                "orders": {},
                "clients": {},
                "balances": {asset: [amount, "0"] for asset, amount in self.settings.balances.items()},
            }
        # Written at once, and only if no other process wrote it first: every process that prices
        # from this venue serves the same snapshot at the same moment.
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self._state_file.with_name(f"state.{os.getpid()}.{threading.get_ident()}.tmp")
        tmp.write_text(json.dumps(fresh, separators=(",", ":")))
        try:
            os.link(tmp, self._state_file)
        except FileExistsError:
            return self._load()
        finally:
            tmp.unlink(missing_ok=True)
        return fresh

    def _save(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        tmp = self._state_file.with_suffix(".tmp")
        tmp.write_text(json.dumps(self._state, separators=(",", ":")))
        os.replace(tmp, self._state_file)
