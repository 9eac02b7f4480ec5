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
from andchain.trading.risk import BP, RiskOrder

OPEN, FILLED, CANCELLED, REJECTED = "open", "filled", "cancelled", "rejected"
LIMIT, MARKET = "limit", "market"
HOLD_CODE = "desk_order"
CLIENT_ORDER_ID_MAX = 64
ORDER_ID_MAX = 2**63 - 1


def _text(value: Decimal) -> str:
    """A decimal without its trailing zeros, never in exponent notation."""
    return format(value.normalize(), "f")


def cents_up(value: Decimal) -> int:
    return int((value / CENT).to_integral_value(ROUND_CEILING))


def cents_down(value: Decimal) -> int:
    return int((value / CENT).to_integral_value(ROUND_FLOOR))


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
    cost: Decimal  # what its fills cost, exactly (price x quantity summed): the cents are rounded from it
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
        Decimal(row.quantity), Decimal(row.filled), Decimal(row.cost), row.status, row.reason, int(row.priority),
        int(row.hold_seq),
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


# Appended to when a change touched the book in memory (it is then dropped if the transaction fails).
Touched = list[bool]


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
        if not 0 < wanted <= ORDER_ID_MAX:
            raise NotFound(f"no order {order_id!r}", code="order_not_found")
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
                    t.c.instrument == instrument.symbol, t.c.status == OPEN, t.c.type == LIMIT
                )
            ).all()
        sides: dict[str, dict[Decimal, Decimal]] = {"buy": {}, "sell": {}}
        for row in rows:
            price = Decimal(row.price)
            left = Decimal(row.quantity) - Decimal(row.filled)
            sides[row.side][price] = sides[row.side].get(price, Decimal(0)) + left
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
        same order. A market order is matched within the price band around the venue's mid."""
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
            raise DomainError(f"a client order id has 1-{CLIENT_ORDER_ID_MAX} characters", code="invalid_request")
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
        self.desk.clients.compliance.require(client.id, flow="desk_order")
        self.desk._network_of(instrument.base)  # settles at the custodian, or is refused now
        mid = self.desk.venue.fetch_ticker(instrument.symbol).last
        collar = None
        if limit is None:
            if mid is None:
                raise DomainError(
                    f"no reference price for {instrument.symbol}: a market order cannot be bounded; name a price",
                    code="no_reference_price",
                )
            # Bounded by the price band: a market order never sweeps the book beyond it.
            band = Decimal(self.desk.settings.risk.price_band_bps) * BP
            edge = mid * (1 + band) if side == "buy" else mid * (1 - band)
            collar = int((edge / instrument.price_increment).to_integral_value(ROUND_FLOOR if side == "buy"
                                                                               else ROUND_CEILING))  # fmt: skip
        estimate = limit if limit is not None else mid
        assert estimate is not None
        self._pre_trade(client.id, instrument, side, size, estimate, mid, count=True)
        prefetched = self._prefetch(client.id, instrument, side) if route else None
        self.desk._ensure_cash()
        self.desk.custody.ensure_positions(self.desk.settings.custodian, client.id, instrument.base)
        self.desk.custody.ensure_positions(self.desk.settings.custodian, DESK, instrument.base)
        values = {
            "client_id": client.id, "client_order_id": client_order_id, "request_sha256": digest,
            "instrument": instrument.symbol, "side": side, "type": LIMIT if limit is not None else MARKET,
            "tif": tif, "post_only": post_only, "route": route, "price": request["price"],
            "quantity": _text(size), "filled": "0", "cost": "0", "status": OPEN, "reason": None, "hold_seq": -1,
        }  # fmt: skip
        try:
            return self._change(instrument, lambda conn, book, version, mutated: self._submit(
                conn, book, version, mutated, instrument, values, lots, ticks if collar is None else collar,
                estimate, prefetched))  # fmt: skip
        except IntegrityError:
            existing = self._by_client_order_id(client.id, client_order_id)
            if existing is None:
                raise
            return self._replayed(existing, digest)
        except _Denied as denied:
            self.desk._checked(denied.decision, client.id, instrument.symbol, side, "order")
            raise  # (_checked raised the denial)

    def _pre_trade(
        self,
        client: str,
        instrument: Instrument,
        side: str,
        size: Decimal,
        price: Decimal,
        mid: Decimal | None,
        *,
        count: bool,
        replacing: Decimal = Decimal(0),
    ) -> None:
        """The bank's risk appetite for a client's order on the book (the desk takes no side of it).
        `replacing`: what an amended order's remainder counted in the client's day before."""
        exposure = self.desk.exposure(client, mid)
        exposure.client_daily_notional -= replacing
        decision = self.desk.risk.check(
            RiskOrder(client, self.desk.tier_of(client), instrument, side, size, price),
            exposure,
            count=count,
            principal=False,
        )
        self.desk._checked(decision, client, instrument.symbol, side, "order")

    def _prefetch(self, client: str, instrument: Instrument, side: str) -> dict[str, Any]:
        """What routing may need, read before the book is locked (the venue may be slow)."""
        book = self.desk.venue.fetch_order_book(instrument.symbol)
        return {"book": book, "exposure": self.desk.exposure(client, book.mid)}

    def cancel_frozen(self, limit: int = 100) -> int:
        """Take off the book the resting orders of parties frozen on a lawful order (a frozen party's order
        could not settle, and a taker matching it must not be refused for it); how many."""
        from andchain.compliance import schema as compliance

        o, p = schema.orders, compliance.parties
        with self.ctx.engine.connect() as conn:
            ids = [
                int(row[0])
                for row in conn.execute(
                    select(o.c.id)
                    .join(p, p.c.client_id == o.c.client_id)
                    .where(o.c.status == OPEN, p.c.frozen_order.is_not(None))
                    .order_by(o.c.id)
                    .limit(limit)
                )
            ]
        cancelled = 0
        for order_id in ids:
            try:
                self.cancel(order_id, reason="party frozen")
                cancelled += 1
            except Conflict:
                continue  # filled or cancelled meanwhile
        return cancelled

    def cancel(self, order_id: str | int, *, client: str | None = None, reason: str = "cancelled") -> OrderRecord:
        """Take a resting order off the book and release what it holds."""
        record = self.get(order_id, client=client)
        instrument = self.instruments.get(record.instrument)

        def change(conn: Connection, book: Book, version: int, mutated: Touched) -> Placed:
            current = self._row(conn, record.id)
            if current.status != OPEN:
                raise Conflict(f"order {record.id} is {current.status}", code="order_not_open")
            mutated.append(True)
            book.cancel(current.id)
            self._release(conn, current)
            self._write(conn, current, status=CANCELLED, reason=reason)
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
        at the same price keeps its place; anything else goes to the back of its level and may match.
        Checked as a new order is (the client active, the bank's risk appetite, the day's room)."""
        if quantity is None and price is None:
            raise DomainError("an amendment changes the quantity, the price, or both", code="invalid_request")
        record = self.get(order_id, client=client)
        if record.status != OPEN or record.type != LIMIT:
            raise Conflict(f"order {record.id} is {record.status}", code="order_not_open")
        instrument = self.instruments.get(record.instrument)
        asked_size = None if quantity is None else _decimal(quantity, "quantity")
        asked_price = None if price is None else _decimal(price, "price")
        self.desk.clients.active(record.client)
        size = asked_size if asked_size is not None else record.quantity
        limit = asked_price if asked_price is not None else record.price
        assert limit is not None
        ticks = instrument.ticks(limit)
        instrument.lots(size)
        instrument.check_notional(ticks, instrument.lots(size))
        mid = self.desk.venue.fetch_ticker(instrument.symbol).last
        assert record.price is not None
        self._pre_trade(record.client, instrument, record.side, size - record.filled, limit, mid, count=True,
                        replacing=record.price * record.remaining)  # fmt: skip

        def change(conn: Connection, book: Book, version: int, mutated: Touched) -> Placed:
            current = self._row(conn, record.id)
            if current.status != OPEN or current.type != LIMIT:
                raise Conflict(f"order {record.id} is {current.status}", code="order_not_open")
            new_size = asked_size if asked_size is not None else current.quantity
            new_price = asked_price if asked_price is not None else current.price
            assert new_price is not None
            new_ticks = instrument.ticks(new_price)
            if new_size <= current.filled:
                raise DomainError(
                    f"order {record.id} has filled {current.filled}: its quantity must stay above that",
                    code="quantity_not_above_filled",
                )
            instrument.check_notional(new_ticks, instrument.lots(new_size))
            keeps_place = new_price == current.price and new_size <= current.quantity
            self._release(conn, current)
            self._write(conn, current, price=str(instrument.price(new_ticks)), quantity=_text(new_size),
                        priority=current.priority if keeps_place else version)  # fmt: skip
            amended = self._row(conn, current.id)
            # The day's room for what the amendment adds (the order's own remainder is counted there).
            self.desk.check_day(conn, {"client": current.client, "notional": 0})
            self._hold(conn, amended, instrument)
            mutated.append(True)
            result = book.amend(current.id, _lots(instrument, new_size), new_ticks)
            if result.status is Status.REJECTED:
                raise DomainError(f"the book refused the amendment: {result.reason}", code="amend_refused")
            return self._after(conn, version, instrument, self._row(conn, current.id), result, None, book)

        try:
            return self._change(instrument, change)
        except _Denied as denied:
            self.desk._checked(denied.decision, record.client, instrument.symbol, record.side, "order")
            raise  # (_checked raised the denial)

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
        version row; the book in memory kept once the transaction committed (or when nothing touched it)."""
        with self._lock:
            mutated: Touched = []
            try:
                with write_transaction(self.ctx.engine) as conn:
                    version = self._next_version(conn, instrument.symbol)
                    book = self._book(conn, instrument, version)
                    placed: Placed = change(conn, book, version, mutated)
                self._books[instrument.symbol] = (version, book)
                return placed
            except BaseException:
                if mutated:
                    self._books.pop(instrument.symbol, None)  # ahead of the database's, which rolled back
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
            result = book.submit(order.id, order.client, side, _lots(instrument, order.remaining),
                                 _ticks(instrument, order.price), TimeInForce.GTC, order.post_only)  # fmt: skip
            if result.status is not Status.RESTING:
                raise InvariantBroken(f"the stored book of {instrument.symbol} crosses at order {order.id}")
            book.orders[order.id].quantity = _lots(instrument, order.quantity)
        return book

    def _hold(self, conn: Connection, order: OrderRecord, instrument: Instrument) -> None:
        """Hold what the order's remainder needs: a sell its quantity; a limit buy what its whole cost
        rounds up to, less what its fills have cost (so that what its trades and this hold take together
        never exceeds its first hold)."""
        remaining = order.remaining
        if remaining <= 0 or order.status != OPEN or (order.side == "buy" and order.price is None):
            return
        seq = order.hold_seq + 1
        custodian = self.desk.settings.custodian
        if order.side == "buy":
            assert order.price is not None
            amount = cents_up(order.cost + order.price * remaining) - cents_up(order.cost)
            debit, credit, asset = dda_account(order.client), DESK_CASH, "USD"
        else:
            amount = int(remaining.scaleb(self.desk.custody.scale(instrument.base)))
            debit = position_account(custodian, order.client, instrument.base)
            credit, asset = position_account(custodian, DESK, instrument.base), instrument.base
        if amount <= 0:
            return
        try:
            holds.reserve(
                self.ledger, order_hold(order.id, seq), self.ledger.account(debit, conn=conn).id,
                self.ledger.account(credit, conn=conn).id, amount, asset, memo=f"order {order.id}", conn=conn,
            )  # fmt: skip
        except holds.LedgerRefused as exc:
            what = "the price of the order" if order.side == "buy" else f"{remaining} {instrument.base}"
            raise DomainError(
                f"the client does not have {what} available: {exc.message}", code="insufficient_funds"
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
        mutated: Touched,
        instrument: Instrument,
        values: dict[str, Any],
        lots: int,
        ticks: int | None,
        estimate: Decimal,
        prefetched: dict[str, Any] | None,
    ) -> Placed:
        t = schema.orders
        now = self.ctx.clock()
        inserted = conn.execute(t.insert().values(**values, priority=version, created_at_us=now, updated_at_us=now))
        key = inserted.inserted_primary_key
        assert key is not None
        order = self._row(conn, int(key[0]))
        # The day's room: what it traded, what rests, and this order (a market one at the venue's mid).
        self.desk.check_day(
            conn,
            {"client": order.client, "notional": 0 if order.type == LIMIT else cents_up(order.quantity * estimate)},
        )
        # Compliance decides the order as placed (KYC, freeze, the tier's limits on its whole notional at its
        # limit price, or a market order's at the venue's mid); its fills are not counted again.
        most = cents_up(order.quantity * (order.price if order.type == LIMIT and order.price else estimate))
        self.desk.clients.compliance.admit(conn, order.client, "desk_order", most, f"desk_order:{order.id}")
        self._hold(conn, order, instrument)
        order = self._row(conn, order.id)
        side = Side.BUY if order.side == "buy" else Side.SELL
        tif = TimeInForce(order.tif) if order.type == LIMIT else TimeInForce.IOC
        mutated.append(True)
        try:
            result = book.submit(order.id, order.client, side, lots, ticks, tif, order.post_only)
        except BookError as exc:
            raise DomainError(str(exc), code="invalid_request") from None
        return self._after(conn, version, instrument, order, result, prefetched, book)

    def _after(
        self,
        conn: Connection,
        version: int,
        instrument: Instrument,
        taker: OrderRecord,
        result: Any,
        prefetched: dict[str, Any] | None,
        book: Book,
    ) -> Placed:
        """Book what the match did: trades for each fill, the orders' fills, costs, states and holds."""
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
        filled = {order_id: order.filled for order_id, order in involved.items()}
        cost = {order_id: order.cost for order_id, order in involved.items()}
        trades = []
        for n, fill in enumerate(result.fills):
            maker = involved[fill.maker]
            buyer, seller = (taker, maker) if taker.side == "buy" else (maker, taker)
            price = instrument.price(fill.price)
            size = instrument.size(fill.quantity)
            # Each side's cents from its cumulative cost: a buyer pays what its cost rounds up to, a seller
            # receives what it rounds down to, never a cent more in total than its order held or promised.
            buyer_cents = cents_up(cost[buyer.id] + price * size) - cents_up(cost[buyer.id])
            seller_cents = cents_down(cost[seller.id] + price * size) - cents_down(cost[seller.id])
            legs = f"desk-book-{instrument.symbol}-{version}-{n}"
            sale = self.desk.trade_payload(
                client=seller.client, instrument=instrument, side="sell", quantity=size, price=price,
                notional_minor=seller_cents, legs=f"{legs}-sell", order=seller.id, hedge=False,
            )  # fmt: skip
            sale["deliver_to"] = buyer.client  # the asset goes straight to the buyer's account
            sold = self.desk.record_trade(
                conn, f"{legs}-sell", sale, request={"order": seller.id, "match": legs}, check_day=False
            )
            purchase = self.desk.trade_payload(
                client=buyer.client, instrument=instrument, side="buy", quantity=size, price=price,
                notional_minor=buyer_cents, legs=f"{legs}-buy", order=buyer.id, hedge=False,
            )  # fmt: skip
            purchase["after"] = f"{legs}-sell"  # delivered by the sale's transfer
            bought = self.desk.record_trade(
                conn, f"{legs}-buy", purchase, request={"order": buyer.id, "match": legs}, check_day=False
            )
            for order_id in (buyer.id, seller.id):
                filled[order_id] += size
                cost[order_id] += price * size
            trades.append({"with": "book", "price": str(price), "quantity": _text(size),
                           "trade": bought.id if taker.side == "buy" else sold.id})  # fmt: skip
        for order in involved.values():
            if order.id == taker.id:
                continue
            done = filled[order.id] >= order.quantity
            status, reason = (FILLED, None) if done else (OPEN, None)
            if not done and order.quantity - filled[order.id] < instrument.min_size:
                book.cancel(order.id)  # a remainder too small to trade: cancelled, its hold released
                status, reason = CANCELLED, "remainder_below_minimum"
            self._write(conn, order, filled=_text(filled[order.id]), cost=str(cost[order.id]), status=status,
                        reason=reason)  # fmt: skip
            self._hold(conn, self._row(conn, order.id), instrument)
        taker_filled, taker_cost = filled[taker.id], cost[taker.id]
        remaining = taker.quantity - taker_filled
        reason = None
        if result.status is Status.CANCELLED and remaining > 0 and taker.route and prefetched is not None:
            routed, reason = self._route(conn, version, instrument, taker, remaining, taker_cost, prefetched)
            if routed is not None:
                taker_filled += Decimal(routed["quantity"])
                taker_cost += Decimal(routed["price"]) * Decimal(routed["quantity"])
                trades.append(routed)
                remaining = taker.quantity - taker_filled
        if remaining <= 0:
            status = FILLED
        elif result.status is Status.RESTING:
            status = OPEN
            if remaining < instrument.min_size:
                book.cancel(taker.id)
                status, reason = CANCELLED, "remainder_below_minimum"
        else:
            status = CANCELLED
            reason = reason or ("not_filled_at_once" if taker.type == LIMIT else "book_exhausted")
        self._write(conn, taker, filled=_text(taker_filled), cost=str(taker_cost), status=status, reason=reason)
        if status == OPEN:
            self._hold(conn, self._row(conn, taker.id), instrument)
        return Placed(self._row(conn, taker.id), trades)

    def _route(
        self,
        conn: Connection,
        version: int,
        instrument: Instrument,
        order: OrderRecord,
        remaining: Decimal,
        cost: Decimal,
        prefetched: dict[str, Any],
    ) -> tuple[dict[str, Any] | None, str | None]:
        """What the book could not fill, traded with the desk at the venue's price read before the book
        was locked (within the order's limit and the desk's appetite); (the trade, or None and why not)."""
        tier_name = self.desk.tier_of(order.client)
        tier = self.desk.settings.risk.tiers.get(tier_name)
        if tier is None:
            return None, "unknown_tier"
        try:
            price, size, notional, _ = self.desk.venue_price(
                instrument, order.side, Decimal(tier.spread_bps), size=remaining, book=prefetched["book"]
            )
        except DomainError as exc:
            return None, exc.code
        if order.price is not None and (price > order.price if order.side == "buy" else price < order.price):
            return None, "venue_price_beyond_limit"
        decision = self.desk.risk.check(
            RiskOrder(order.client, tier_name, instrument, order.side, size, price), prefetched["exposure"], count=False
        )
        if not decision.allowed:
            self.desk.record_denial(conn, decision, order.client, instrument.symbol, order.side, "route")
            return None, decision.code
        if order.side == "buy":
            notional = cents_up(cost + price * size) - cents_up(cost)
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


def _lots(instrument: Instrument, size: Decimal) -> int:
    """Whole lots of a stored size (its bounds were checked when it was ordered)."""
    lots = size / instrument.size_increment
    if lots != lots.to_integral_value():
        raise InvariantBroken(f"a stored size of {instrument.symbol} is not whole lots: {size}")
    return int(lots)


def _ticks(instrument: Instrument, price: Decimal) -> int:
    ticks = price / instrument.price_increment
    if ticks != ticks.to_integral_value():
        raise InvariantBroken(f"a stored price of {instrument.symbol} is not whole ticks: {price}")
    return int(ticks)


class FrozenOrdersPart:
    """Cancels the resting orders of parties frozen on a lawful order, every few seconds."""

    name = "desk-frozen-orders"

    def __init__(self, books: OrderBooks, monotonic: Any = None, every_s: float = 2.0) -> None:
        import time

        self.books = books
        self.monotonic = monotonic or time.monotonic
        self.every_s = every_s
        self.next_s = 0.0
        self.cancelled = 0

    def run(self) -> None:
        if self.monotonic() < self.next_s:
            return
        self.cancelled += self.books.cancel_frozen()
        self.next_s = self.monotonic() + self.every_s

    def idle(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"cancelled": self.cancelled}


__all__ = ["FrozenOrdersPart", "OrderBooks", "OrderRecord", "Placed", "order_hold"]
