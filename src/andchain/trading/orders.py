"""The clients' order book: limit and market orders (GTC, IOC, FOK, post-only) matched between clients
by price, then time (`trading.book.Book`), settled through the desk, and what the book cannot fill
routed to the desk at the venue's price.

Every change to an instrument's book happens in one database transaction that first moves the
book's version (`desk_books`): that row's lock serialises the writers of one instrument across
processes, and the version tells a process whether its book in memory is still the database's (if
not, it is rebuilt from the resting orders, in their priority). In that transaction:

- the order is recorded, with its hold: a limit buy holds its price x quantity on the client's
  DDA, a sell its quantity in the client's position at the custodian (a market buy holds at match);
- matching runs; each match becomes two trades with the desk in the middle (`desk_trade`, the same
  operation as an RFQ's): the seller's (its asset to the desk, the desk's cash to it) and the
  buyer's (its cash to the desk, the asset from the desk once the seller's has arrived). The
  orders' holds give way to the trades' own, and what still rests is held again;
- with `route`, what the book could not fill of an IOC or market order is traded with the desk at
  the venue's price for that size plus the client's tier spread (within the order's limit, within
  the desk's risk appetite), and hedged like a quote;
- the orders' fills and states are written.

A refusal rolls all of it back: nothing is recorded. The desk takes no position in a match, so the
desk's appetite (and a reducing desk) applies only to what is routed to it; a halted desk refuses
every new order.
"""

from __future__ import annotations

import hashlib
import threading
from dataclasses import dataclass, field
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import Any

from sqlalchemy import Connection, select, update
from sqlalchemy.exc import IntegrityError

from andchain.custody.port import DESK
from andchain.custody.service import position_account
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError, InvariantBroken, NotFound
from andchain.events import store as events
from andchain.ops import holds
from andchain.ops.core import canonical_json
from andchain.tokens.model import dda_account
from andchain.trading import schema
from andchain.trading.book import Book, BookError, Side, Status, TimeInForce
from andchain.trading.desk import CENT, DESK_CASH, DeskService, _decimal, _Denied
from andchain.trading.instruments import Instrument
from andchain.trading.risk import RiskOrder

OPEN, FILLED, CANCELLED, REJECTED = "open", "filled", "cancelled", "rejected"
LIMIT, MARKET = "limit", "market"
HOLD_CODE = "desk_order"
CLIENT_ORDER_ID_MAX = 64


def _text(value: Decimal) -> str:
    """A decimal without its trailing zeros, never in exponent notation."""
    return format(value.normalize(), "f")


def order_hold(order_id: int, seq: int) -> holds.Hold:
    return holds.Hold(f"{HOLD_CODE}:{order_id}:{seq}", HOLD_CODE)


@dataclass(frozen=True)
class OrderRecord:
    id: int
    client: str
    client_order_id: str
    instrument: str
    side: str
    type: str
    tif: str
    post_only: bool
    route: bool
    price: Decimal | None
    quantity: Decimal
    filled: Decimal
    status: str
    reason: str | None
    priority: int
    hold_seq: int
    created_at_us: int
    updated_at_us: int

    @property
    def remaining(self) -> Decimal:
        return self.quantity - self.filled

    def view(self) -> dict[str, Any]:
        return {
            "id": str(self.id),
            "client_order_id": self.client_order_id,
            "client": self.client,
            "instrument": self.instrument,
            "side": self.side,
            "type": self.type,
            "time_in_force": self.tif,
            "post_only": self.post_only,
            "route": self.route,
            "price": None if self.price is None else str(self.price),
            "quantity": _text(self.quantity),
            "filled": _text(self.filled),
            "remaining": _text(self.remaining) if self.status == OPEN else "0",
            "status": self.status,
            "reason": self.reason,
            "created_at": events.iso(self.created_at_us),
            "updated_at": events.iso(self.updated_at_us),
        }


def _record_of(row: Any) -> OrderRecord:
    return OrderRecord(
        int(row.id), row.client_id, row.client_order_id, row.instrument, row.side, row.type, row.tif,
        bool(row.post_only), bool(row.route), None if row.price is None else Decimal(row.price),
        Decimal(row.quantity), Decimal(row.filled), row.status, row.reason, int(row.priority), int(row.hold_seq),
        int(row.created_at_us), int(row.updated_at_us),
    )  # fmt: skip


@dataclass
class Placed:
    """An order as it stands after a change, and the trades that change made."""

    order: OrderRecord
    trades: list[dict[str, Any]] = field(default_factory=list)
    replayed: bool = False

    def view(self) -> dict[str, Any]:
        return {**self.order.view(), "trades": self.trades, "replayed": self.replayed}


class OrderBooks:
    def __init__(self, desk: DeskService) -> None:
        self.desk = desk
        self.ctx = desk.ctx
        self.ledger = desk.ledger
        self.instruments = desk.instruments
        self._books: dict[str, tuple[int, Book]] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ reads

    def get(self, order_id: str | int, *, client: str | None = None) -> OrderRecord:
        try:
            wanted = int(order_id)
        except (TypeError, ValueError):
            raise NotFound(f"no order {order_id!r}", code="order_not_found") from None
        t = schema.orders
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.id == wanted)).first()
        if row is None or (client is not None and row.client_id != client):
            raise NotFound(f"no order {order_id!r}", code="order_not_found")
        return _record_of(row)

    def list(
        self, *, client: str | None = None, instrument: str | None = None, status: str | None = None, limit: int = 100
    ) -> list[OrderRecord]:
        t = schema.orders
        query = select(t).order_by(t.c.id.desc()).limit(limit)
        if client is not None:
            query = query.where(t.c.client_id == client)
        if instrument is not None:
            query = query.where(t.c.instrument == self.instruments.get(instrument).symbol)
        if status is not None:
            query = query.where(t.c.status == status)
        with self.ctx.engine.connect() as conn:
            return [_record_of(r) for r in conn.execute(query)]

    def depth(self, symbol: str, levels: int = 10) -> dict[str, Any]:
        """What rests on the book, per price level (no owners)."""
        instrument = self.instruments.get(symbol)
        t = schema.orders
        with self.ctx.engine.connect() as conn:
            rows = conn.execute(
                select(t.c.side, t.c.price, t.c.quantity, t.c.filled).where(
                    t.c.instrument == instrument.symbol, t.c.status == OPEN
                )
            ).all()
        sides: dict[str, dict[Decimal, Decimal]] = {"buy": {}, "sell": {}}
        for row in rows:
            price = Decimal(row.price)
            sides[row.side][price] = (
                sides[row.side].get(price, Decimal(0)) + Decimal(row.quantity) - Decimal(row.filled)
            )
        bids = sorted(sides["buy"].items(), reverse=True)[:levels]
        asks = sorted(sides["sell"].items())[:levels]
        return {
            "instrument": instrument.symbol,
            "bids": [[str(p), _text(q)] for p, q in bids],
            "asks": [[str(p), _text(q)] for p, q in asks],
        }

    # ----------------------------------------------------------------- writes

    def place(
        self,
        client_ref: str,
        symbol: str,
        side: str,
        quantity: object,
        *,
        price: object = None,
        tif: str = "gtc",
        post_only: bool = False,
        route: bool = False,
        client_order_id: str | None = None,
    ) -> Placed:
        """Place an order: matched at once against the book, what is left resting (GTC limit), cancelled
        (IOC, market), or routed to the desk (`route`). The same client order id and request answer the
        same order."""
        if side not in ("buy", "sell"):
            raise DomainError(f"side is buy or sell, was {side!r}", code="invalid_request")
        if tif not in ("gtc", "ioc", "fok"):
            raise DomainError(f"time in force is gtc, ioc or fok, was {tif!r}", code="invalid_request")
        if not isinstance(post_only, bool) or not isinstance(route, bool):
            raise DomainError("post_only and route are true or false", code="invalid_request")
        instrument = self.instruments.get(symbol)
        size = _decimal(quantity, "quantity")
        lots = instrument.lots(size)
        limit = None if price is None else _decimal(price, "price")
        ticks = None if limit is None else instrument.ticks(limit)
        if limit is None and post_only:
            raise DomainError("a post-only order names its price", code="invalid_request")
        if post_only and route:
            raise DomainError("a post-only order only rests; it is never routed", code="invalid_request")
        if ticks is not None:
            instrument.check_notional(ticks, lots)
        client = self.desk.clients.client(client_ref)
        if client_order_id is None:
            client_order_id = f"auto-{self.ledger.ids.new_id()}"
        if not isinstance(client_order_id, str) or not 0 < len(client_order_id) <= CLIENT_ORDER_ID_MAX:
            raise DomainError(
                f"a client order id has 1-{CLIENT_ORDER_ID_MAX} characters", code="invalid_request"
            )  # fmt: skip
        request = {
            "client": client.id, "instrument": instrument.symbol, "side": side, "quantity": _text(size),
            "price": None if ticks is None else str(instrument.price(ticks)), "tif": tif, "post_only": post_only,
            "route": route,
        }  # fmt: skip
        digest = hashlib.sha256(canonical_json(request).encode()).hexdigest()
        existing = self._by_client_order_id(client.id, client_order_id)
        if existing is not None:
            return self._replayed(existing, digest)
        client = self.desk.clients.active(client.id)
        self.desk._network_of(instrument.base)  # settles at the custodian, or is refused now
        tier = self.desk.tier_of(client.id)
        mid = self.desk.venue.fetch_ticker(instrument.symbol).last
        # A market order is checked at the venue's mid (its price is known at match).
        estimate = limit or mid or Decimal(0)
        decision = self.desk.risk.check(
            RiskOrder(client.id, tier, instrument, side, size, estimate),
            self.desk.exposure(client.id, mid),
            principal=False,
        )
        self.desk._checked(decision, client.id, instrument.symbol, side, "order")
        self.desk._ensure_cash()
        self.desk.custody.ensure_positions(self.desk.settings.custodian, client.id, instrument.base)
        self.desk.custody.ensure_positions(self.desk.settings.custodian, DESK, instrument.base)
        values = {
            "client_id": client.id, "client_order_id": client_order_id, "request_sha256": digest,
            "instrument": instrument.symbol, "side": side, "type": LIMIT if limit is not None else MARKET,
            "tif": tif, "post_only": post_only, "route": route, "price": request["price"],
            "quantity": _text(size), "filled": "0", "status": OPEN, "reason": None, "hold_seq": -1,
        }  # fmt: skip
        try:
            return self._change(instrument, lambda conn, book, version: self._submit(
                conn, book, version, instrument, values, lots, ticks, estimate))  # fmt: skip
        except IntegrityError:
            existing = self._by_client_order_id(client.id, client_order_id)
            if existing is None:
                raise
            return self._replayed(existing, digest)
        except _Denied as denied:
            self.desk._checked(denied.decision, client.id, instrument.symbol, side, "order")
            raise  # (_checked raised the denial)

    def cancel(self, order_id: str | int, *, client: str | None = None) -> OrderRecord:
        """Take a resting order off the book and release what it holds."""
        record = self.get(order_id, client=client)
        instrument = self.instruments.get(record.instrument)

        def change(conn: Connection, book: Book, version: int) -> Placed:
            current = self._row(conn, record.id)
            if current.status != OPEN:
                raise Conflict(f"order {record.id} is {current.status}", code="order_not_open")
            book.cancel(current.id)
            self._release(conn, current)
            self._write(conn, current, status=CANCELLED, reason="cancelled")
            return Placed(self._row(conn, current.id))

        return self._change(instrument, change).order

    def amend(
        self,
        order_id: str | int,
        *,
        quantity: object = None,
        price: object = None,
        client: str | None = None,
    ) -> Placed:
        """Change a resting limit order's quantity (its total, fills included) or price: a smaller quantity
        at the same price keeps its place; anything else goes to the back of its level and may match."""
        if quantity is None and price is None:
            raise DomainError("an amendment changes the quantity, the price, or both", code="invalid_request")
        record = self.get(order_id, client=client)
        instrument = self.instruments.get(record.instrument)
        new_size = record.quantity if quantity is None else _decimal(quantity, "quantity")
        new_price = record.price if price is None else _decimal(price, "price")
        lots = instrument.lots(new_size)
        ticks = None if new_price is None else instrument.ticks(new_price)
        if ticks is not None:
            instrument.check_notional(ticks, lots)

        def change(conn: Connection, book: Book, version: int) -> Placed:
            current = self._row(conn, record.id)
            if current.status != OPEN or current.type != LIMIT:
                raise Conflict(f"order {record.id} is {current.status}", code="order_not_open")
            if new_size <= current.filled:
                raise DomainError(
                    f"order {record.id} has filled {current.filled}: its quantity must stay above that",
                    code="quantity_not_above_filled",
                )
            keeps_place = new_price == current.price and new_size <= current.quantity
            self._release(conn, current)
            self._write(conn, current, price=None if ticks is None else str(instrument.price(ticks)),
                        quantity=_text(new_size),
                        priority=current.priority if keeps_place else version)  # fmt: skip
            amended = self._row(conn, current.id)
            self._hold(conn, amended, instrument)
            result = book.amend(current.id, lots, ticks)
            if result.status is Status.REJECTED:
                raise DomainError(f"the book refused the amendment: {result.reason}", code="amend_refused")
            return self._after(conn, version, instrument, self._row(conn, current.id), result, None)

        return self._change(instrument, change)

    # ---------------------------------------------------------------- inside

    def _by_client_order_id(self, client: str, client_order_id: str) -> OrderRecord | None:
        t = schema.orders
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(t).where(t.c.client_id == client, t.c.client_order_id == client_order_id)).first()
        return None if row is None else _record_of(row)

    def _replayed(self, existing: OrderRecord, digest: str) -> Placed:
        t = schema.orders
        with self.ctx.engine.connect() as conn:
            known = conn.execute(select(t.c.request_sha256).where(t.c.id == existing.id)).scalar()
        if known != digest:
            raise Conflict(
                f"client order id {existing.client_order_id!r} was used for another order ({existing.id})",
                code="idempotency_key_reused",
            )
        return Placed(existing, [], replayed=True)

    def _row(self, conn: Connection, order_id: int) -> OrderRecord:
        t = schema.orders
        return _record_of(conn.execute(select(t).where(t.c.id == order_id)).one())

    def _write(self, conn: Connection, order: OrderRecord, **values: Any) -> None:
        t = schema.orders
        conn.execute(update(t).where(t.c.id == order.id).values(updated_at_us=self.ctx.clock(), **values))

    def _change(self, instrument: Instrument, change: Any) -> Placed:
        """One change of the instrument's book, in one transaction, its writers serialised by the book's
        version row; the book in memory kept only once the transaction committed."""
        with self._lock:
            try:
                with write_transaction(self.ctx.engine) as conn:
                    version = self._next_version(conn, instrument.symbol)
                    book = self._book(conn, instrument, version)
                    placed: Placed = change(conn, book, version)
                self._books[instrument.symbol] = (version, book)
                return placed
            except BaseException:
                self._books.pop(instrument.symbol, None)  # the book in memory may be ahead of the database's
                raise

    def _next_version(self, conn: Connection, symbol: str) -> int:
        b = schema.books
        for _ in range(2):
            if conn.execute(update(b).where(b.c.instrument == symbol).values(version=b.c.version + 1)).rowcount:
                return int(conn.execute(select(b.c.version).where(b.c.instrument == symbol)).scalar_one())
            try:
                with conn.begin_nested():
                    conn.execute(b.insert().values(instrument=symbol, version=1))
                return 1
            except IntegrityError:
                continue  # made at once by another writer: move it
        raise InvariantBroken(f"the book of {symbol} has no version row")

    def _book(self, conn: Connection, instrument: Instrument, version: int) -> Book:
        cached = self._books.get(instrument.symbol)
        if cached is not None and cached[0] == version - 1:
            return cached[1]
        book = Book(instrument.symbol)
        t = schema.orders
        rows = conn.execute(
            select(t)
            .where(t.c.instrument == instrument.symbol, t.c.status == OPEN, t.c.type == LIMIT)
            .order_by(t.c.priority, t.c.id)
        ).all()
        for row in rows:
            order = _record_of(row)
            assert order.price is not None
            side = Side.BUY if order.side == "buy" else Side.SELL
            result = book.submit(order.id, order.client, side, instrument.lots(order.remaining),
                                 instrument.ticks(order.price))  # fmt: skip
            if result.status is not Status.RESTING:
                raise InvariantBroken(f"the stored book of {instrument.symbol} crosses at order {order.id}")
            book.orders[order.id].quantity = instrument.lots(order.quantity)
        return book

    def _hold(self, conn: Connection, order: OrderRecord, instrument: Instrument) -> None:
        """Hold what the order's remainder needs (a limit buy its price x quantity, a sell its quantity)."""
        remaining = order.remaining
        if remaining <= 0 or order.status != OPEN or (order.side == "buy" and order.price is None):
            return
        seq = order.hold_seq + 1
        custodian = self.desk.settings.custodian
        if order.side == "buy":
            assert order.price is not None
            amount = int((order.price * remaining / CENT).to_integral_value(ROUND_CEILING))
            debit, credit, asset = dda_account(order.client), DESK_CASH, "USD"
        else:
            amount = int(remaining.scaleb(self.desk.custody.scale(instrument.base)))
            debit = position_account(custodian, order.client, instrument.base)
            credit, asset = position_account(custodian, DESK, instrument.base), instrument.base
        try:
            holds.reserve(
                self.ledger, order_hold(order.id, seq), self.ledger.account(debit, conn=conn).id,
                self.ledger.account(credit, conn=conn).id, amount, asset, memo=f"order {order.id}", conn=conn,
            )  # fmt: skip
        except holds.LedgerRefused as exc:
            what = "the price of the order" if order.side == "buy" else f"{remaining} {instrument.base}"
            raise DomainError(
                f"client {order.client} does not have {what} available: {exc.message}", code="insufficient_funds"
            ) from None
        self._write(conn, order, hold_seq=seq)

    def _release(self, conn: Connection, order: OrderRecord) -> None:
        if order.hold_seq >= 0:
            holds.void(self.ledger, order_hold(order.id, order.hold_seq), conn=conn)

    def _submit(
        self,
        conn: Connection,
        book: Book,
        version: int,
        instrument: Instrument,
        values: dict[str, Any],
        lots: int,
        ticks: int | None,
        estimate: Decimal,
    ) -> Placed:
        t = schema.orders
        now = self.ctx.clock()
        inserted = conn.execute(t.insert().values(**values, priority=version, created_at_us=now, updated_at_us=now))
        key = inserted.inserted_primary_key
        assert key is not None
        order = self._row(conn, int(key[0]))
        # The day's room, for the whole order at its price (a market order's at the venue's mid).
        price = order.price if order.price is not None else estimate
        self.desk.check_day(conn, {"client": order.client, "notional": int(order.quantity * price / CENT)})
        self._hold(conn, order, instrument)
        order = self._row(conn, order.id)
        side = Side.BUY if order.side == "buy" else Side.SELL
        try:
            result = book.submit(order.id, order.client, side, lots, ticks, TimeInForce(order.tif), order.post_only)
        except BookError as exc:
            raise DomainError(str(exc), code="invalid_request") from None
        return self._after(conn, version, instrument, order, result, estimate)

    def _after(
        self,
        conn: Connection,
        version: int,
        instrument: Instrument,
        taker: OrderRecord,
        result: Any,
        estimate: Decimal | None,
    ) -> Placed:
        """Book what the match did: trades for each fill, the orders' fills, states and holds."""
        if result.status is Status.REJECTED:
            self._release(conn, taker)
            self._write(conn, taker, status=REJECTED, reason=result.reason)
            return Placed(self._row(conn, taker.id))
        for cancelled_id in result.cancelled:  # self-trade prevention: the older order gives way
            maker = self._row(conn, cancelled_id)
            self._release(conn, maker)
            self._write(conn, maker, status=CANCELLED, reason="self_trade_prevented")
        involved: dict[int, OrderRecord] = {taker.id: taker}
        for fill in result.fills:
            involved.setdefault(fill.maker, self._row(conn, fill.maker))
        for order in involved.values():
            self._release(conn, order)  # the trades hold their own; what still rests is held again below
        filled: dict[int, Decimal] = {}
        trades = []
        for n, fill in enumerate(result.fills):
            maker = involved[fill.maker]
            buyer, seller = (taker, maker) if taker.side == "buy" else (maker, taker)
            price = instrument.price(fill.price)
            size = instrument.size(fill.quantity)
            legs = f"desk-book-{instrument.symbol}-{version}-{n}"
            sold = self.desk.record_trade(
                conn, f"{legs}-sell",
                self.desk.trade_payload(
                    client=seller.client, instrument=instrument, side="sell", quantity=size, price=price,
                    notional_minor=int((price * size / CENT).to_integral_value(ROUND_FLOOR)),
                    legs=f"{legs}-sell", order=seller.id, hedge=False,
                ),
                request={"order": seller.id, "match": legs}, check_day=False,
            )  # fmt: skip
            bought_payload = self.desk.trade_payload(
                client=buyer.client, instrument=instrument, side="buy", quantity=size, price=price,
                notional_minor=int((price * size / CENT).to_integral_value(ROUND_CEILING)),
                legs=f"{legs}-buy", order=buyer.id, hedge=False,
            )  # fmt: skip
            bought_payload["after"] = f"{legs}-sell"
            bought = self.desk.record_trade(
                conn, f"{legs}-buy", bought_payload, request={"order": buyer.id, "match": legs}, check_day=False
            )
            for order_id in (buyer.id, seller.id):
                filled[order_id] = filled.get(order_id, Decimal(0)) + size
            trades.append({"with": "book", "price": str(price), "quantity": _text(size),
                           "trade": bought.id if taker.side == "buy" else sold.id})  # fmt: skip
        for order in involved.values():
            if order.id == taker.id:
                continue
            total = order.filled + filled.get(order.id, Decimal(0))
            done = total >= order.quantity
            self._write(conn, order, filled=_text(total), status=FILLED if done else OPEN)
            self._hold(conn, self._row(conn, order.id), instrument)
        taker_filled = taker.filled + filled.get(taker.id, Decimal(0))
        remaining = taker.quantity - taker_filled
        reason = None
        if result.status is Status.CANCELLED and remaining > 0 and taker.route:
            routed, reason = self._route(conn, version, instrument, taker, remaining)
            if routed is not None:
                taker_filled += Decimal(routed["quantity"])
                trades.append(routed)
                remaining = taker.quantity - taker_filled
        if remaining <= 0:
            status = FILLED
        elif result.status is Status.RESTING:
            status = OPEN
        else:
            status = CANCELLED
            reason = reason or ("not_filled_at_once" if taker.type == LIMIT else "book_exhausted")
        self._write(conn, taker, filled=_text(taker_filled), status=status, reason=reason)
        if status == OPEN:
            self._hold(conn, self._row(conn, taker.id), instrument)
        return Placed(self._row(conn, taker.id), trades)

    def _route(
        self, conn: Connection, version: int, instrument: Instrument, order: OrderRecord, remaining: Decimal
    ) -> tuple[dict[str, Any] | None, str | None]:
        """What the book could not fill, traded with the desk at the venue's price (within the order's
        limit and the desk's appetite); (the trade, or None and why not)."""
        tier_name = self.desk.tier_of(order.client)
        tier = self.desk.settings.risk.tiers.get(tier_name)
        if tier is None:
            return None, "unknown_tier"
        try:
            price, size, notional, book = self.desk.venue_price(
                instrument, order.side, Decimal(tier.spread_bps), size=remaining
            )
        except DomainError as exc:
            return None, exc.code
        if order.price is not None and (price > order.price if order.side == "buy" else price < order.price):
            return None, "venue_price_beyond_limit"
        decision = self.desk.risk.check(
            RiskOrder(order.client, tier_name, instrument, order.side, size, price),
            self.desk.exposure(order.client, book.mid),
            count=False,
        )
        if not decision.allowed:
            self.desk.record_denial(conn, decision, order.client, instrument.symbol, order.side, "route")
            return None, decision.code
        legs = f"desk-book-{instrument.symbol}-{version}-route"
        try:
            with conn.begin_nested():  # refused: none of it stays
                trade = self.desk.record_trade(
                    conn, legs,
                    self.desk.trade_payload(
                        client=order.client, instrument=instrument, side=order.side, quantity=size, price=price,
                        notional_minor=notional, legs=legs, order=order.id,
                    ),
                    request={"order": order.id, "route": legs}, check_day=False,
                )  # fmt: skip
        except DomainError as exc:
            if exc.transient:
                raise
            return None, exc.code
        return {"with": "desk", "price": str(price), "quantity": _text(size), "trade": trade.id}, None


__all__ = ["OrderBooks", "OrderRecord", "Placed", "order_hold"]
