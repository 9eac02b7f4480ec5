"""The desk's RFQ: a client asks, the desk quotes from the venue's book for that size plus the client's
tier spread, the client accepts within the quote's life, and the trade is executed and settled.

    quote    priced from the venue's book for the size (`sweep`), plus the tier's spread, rounded
             against the client to the tick; risk checked; open for `trading.quote_ttl_s`.
    accept   decided once, in one transaction with the trade and its holds: the quote goes from
             open to accepted only while it has not expired (a conditional update: an accept and
             the expiry racing at the boundary end one way, for both). A buy paid in USD holds
             the client's deposit account (DDA -> desk); a buy paid in deposit tokens records
             their redemption (its hold on the tokens) with the trade; a sell records the
             internal transfer of the asset at the custodian, client -> desk (its hold on the
             client's position).
    trade    an `ops` operation (`desk_trade`), moved by the worker step by step:
             buy:  [fund: the redemption final, then the DDA held] -> execute -> deliver -> settle
             sell: deliver (the client's asset arrives at the desk's account) -> execute -> settle
             execute: the desk keeps the trade (internalises) while its net position stays within
             `trading.internalise_max` or the trade reduces it; otherwise it hedges the size on
             the venue (a market order under a client order id derived from the trade: sent at most
             once). The price was firm at accept: a hedge the venue refuses leaves the risk with
             the desk (logged, in its positions), never with the client.
             deliver: a custody internal transfer at the desk's custodian (the Step 7 operation).
             settle: both legs or neither. When the asset leg completes, the cash leg is posted
             (the held DDA to the desk's cash, or the desk's cash to the client's DDA) with the
             client's fill, in one transaction. When it fails, the held cash is released (and a
             redemption is undone by minting the tokens back) and the trade fails.

Fills (`desk_fills`) are the desk's record of what it traded: each client trade settled (at the
custodian) and each hedge (at the venue). Positions and P&L are their fold (`positions`).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal, InvalidOperation
from typing import Any

from sqlalchemy import Connection, func, select, text, update
from sqlalchemy.exc import IntegrityError

from andchain.context import Context
from andchain.custody.port import DESK
from andchain.custody.service import CustodyService, position_account
from andchain.db import write_transaction
from andchain.errors import Conflict, DomainError, NotFound
from andchain.events import store as events
from andchain.ledger import AccountKind, AccountSpec
from andchain.ops import failpoints, holds
from andchain.ops.core import Operation, OpStatus
from andchain.ops.worker import postpone
from andchain.tokens.model import dda_account
from andchain.trading import schema
from andchain.trading.instruments import Instrument, Instruments
from andchain.trading.positions import Fill, Positions
from andchain.trading.risk import BP, Decision, Exposure, RiskEngine, RiskOrder, States
from andchain.trading.venues.port import Venue, VenueRefused, VenueUnavailable, sweep

log = logging.getLogger(__name__)

TRADE = "desk_trade"
KINDS: tuple[str, ...] = (TRADE,)
DESK_CASH = "desk:usd"
PAY_WITH = ("usd", "deposit_token")
SIDES = ("buy", "sell")
OPEN, ACCEPTED, SETTLED, FAILED, EXPIRED = "open", "accepted", "settled", "failed", "expired"
CENT = Decimal("0.01")
# How often a trade waiting for its other operation (a redemption, a custody transfer) looks again.
WAIT_US = 300_000
WAIT_MIN_US = 50_000
EXPIRE_BATCH = 500
DAY_US = 86_400 * 1_000_000


class _Denied(Exception):
    """A risk denial found inside the accepting transaction (rolled back, then reported)."""

    def __init__(self, decision: Decision) -> None:
        super().__init__(decision.reason)
        self.decision = decision


class QuoteClosed(Conflict):
    """The quote can no longer be accepted (it expired, or ended)."""

    code = "quote_expired"


@dataclass(frozen=True)
class Quote:
    id: str
    client: str
    instrument: str
    side: str
    quantity: Decimal
    price: Decimal
    notional_minor: int
    mid: Decimal
    spread_bps: Decimal
    pay_with: str
    network: str | None
    custodian: str
    status: str
    created_at_us: int
    expires_at_us: int
    decided_at_us: int | None
    trade_id: str | None

    def view(self, now_us: int | None = None) -> dict[str, Any]:
        status = self.status
        if status == OPEN and now_us is not None and now_us >= self.expires_at_us:
            status = EXPIRED  # not yet swept: expired all the same (accept refuses it)
        return {
            "id": self.id,
            "client": self.client,
            "instrument": self.instrument,
            "side": self.side,
            "quantity": str(self.quantity),
            "price": str(self.price),
            "notional": str((Decimal(self.notional_minor) * CENT).quantize(CENT)),
            "pay_with": self.pay_with,
            "network": self.network,
            "custodian": self.custodian,
            "status": status,
            "created_at": events.iso(self.created_at_us),
            "expires_at": events.iso(self.expires_at_us),
            "decided_at": None if self.decided_at_us is None else events.iso(self.decided_at_us),
            "trade": self.trade_id,
        }


def _quote_of(row: Any) -> Quote:
    return Quote(
        row.id,
        row.client_id,
        row.instrument,
        row.side,
        Decimal(row.quantity),
        Decimal(row.price),
        int(row.notional_minor),
        Decimal(row.mid),
        Decimal(row.spread_bps),
        row.pay_with,
        row.network,
        row.custodian,
        row.status,
        int(row.created_at_us),
        int(row.expires_at_us),
        None if row.decided_at_us is None else int(row.decided_at_us),
        row.trade_id,
    )


def _decimal(value: object, what: str) -> Decimal:
    if isinstance(value, bool | float) or not isinstance(value, str | int | Decimal):
        raise DomainError(f"{what} is a decimal string, was {value!r}", code="invalid_request")
    try:
        out = Decimal(value)
    except InvalidOperation:
        raise DomainError(f"{what} is a decimal string, was {value!r}", code="invalid_request") from None
    if not out.is_finite() or out <= 0:
        raise DomainError(f"{what} must be positive, was {value!r}", code="invalid_request")
    if out.adjusted() > 18 or out.as_tuple().exponent < -18:  # type: ignore[operator]
        raise DomainError(f"{what} is out of range, was {value!r}", code="invalid_request")
    return out


def trade_key(quote_id: str) -> str:
    return f"desk-quote-{quote_id}"


def cash_hold(op_id: str) -> holds.Hold:
    return holds.Hold(f"{TRADE}:{op_id}", TRADE)


def asset_hold(op_id: str) -> holds.Hold:
    """A sale's asset, held in the client's position until its transfer to the desk is recorded."""
    return holds.Hold(f"{TRADE}:{op_id}:asset", TRADE)


def _minor(quantity: Decimal, scale: int) -> int:
    value = quantity.scaleb(scale)
    if value != value.to_integral_value():
        raise DomainError(f"{quantity} has more than {scale} decimals", code="excess_precision")
    return int(value)


class DeskService:
    def __init__(
        self,
        ctx: Context,
        *,
        custody: CustodyService | None = None,
        venue: Venue | None = None,
        tokens: Any = None,
    ) -> None:
        self.ctx = ctx
        self.settings = ctx.settings.trading
        self.custody = custody or CustodyService(ctx, tokens=tokens)
        self.tokens = self.custody.tokens
        self.clients = self.custody.clients
        self.ops = self.custody.ops
        self.ledger = ctx.ledger
        self.instruments = Instruments(self.settings)
        self.states = States(ctx.engine, ctx.clock)
        self.risk = RiskEngine(self.settings.risk, self.states)
        self._venue = venue
        self._lock = threading.Lock()
        self._folded = Positions()
        self._folded_after = 0
        self._folded_count = 0
        self._day: tuple[int, Decimal] | None = None  # (day start, realised P&L before it)
        self._cash_ready = False

    # ----------------------------------------------------------------- parts

    @property
    def venue(self) -> Venue:
        with self._lock:
            if self._venue is None:
                from andchain.trading.venues.registry import venue_of

                self._venue = venue_of(self.ctx)
            return self._venue

    def tier_of(self, client_id: str) -> str:
        t = schema.tiers
        with self.ctx.engine.connect() as conn:
            found = conn.execute(select(t.c.tier).where(t.c.client_id == client_id)).scalar()
        return str(found) if found else self.settings.risk.default_tier

    def set_tier(self, client_ref: str, tier: str, *, by: str) -> str:
        client = self.clients.client(client_ref)
        if tier not in self.settings.risk.tiers:
            raise DomainError(
                f"no tier {tier!r}; configured: {', '.join(sorted(self.settings.risk.tiers))}", code="unknown_tier"
            )
        t = schema.tiers
        values = dict(tier=tier, set_by=by[:200], set_at_us=self.ctx.clock())
        with write_transaction(self.ctx.engine) as conn:
            if conn.execute(update(t).where(t.c.client_id == client.id).values(**values)).rowcount == 0:
                conn.execute(t.insert().values(client_id=client.id, **values))
        return client.id

    def _ensure_cash(self, conn: Connection | None = None) -> None:
        if self._cash_ready:
            return
        specs = [AccountSpec(DESK_CASH, "USD", kind=AccountKind.EQUITY)]
        for result in self.ledger.create_accounts(specs, conn=conn):
            if not (result.ok or result.result.value == "exists"):
                raise DomainError(f"the desk's cash account was refused: {result.result.value}")
        self._cash_ready = conn is None  # (in a caller's transaction: until it commits, not known made)

    def _network_of(self, asset: str) -> str:
        network = self.settings.settlement_networks.get(asset)
        if network is None:
            raise DomainError(
                f"the desk settles no {asset} at its custodian (trading.settlement_networks)",
                code="instrument_not_settled",
            )
        return network

    # ------------------------------------------------------------ positions

    def positions(self) -> Positions:
        """Every fill folded, in the order recorded (incrementally: fills are only ever appended)."""
        t = schema.fills
        with self._lock:
            with self.ctx.engine.connect() as conn:
                rows = conn.execute(select(t).where(t.c.id > self._folded_after).order_by(t.c.id)).all()
                total = int(conn.execute(select(func.count()).select_from(t)).scalar() or 0)
                if total != self._folded_count + len(rows):
                    # A fill with a smaller id committed after one with a larger id was folded (two
                    # writers at once): everything again, in id order.
                    rows = conn.execute(select(t).order_by(t.c.id)).all()
                    self._folded, self._folded_after, self._folded_count = Positions(), 0, 0
            for row in rows:
                self._folded.apply([_fill_of(row)])
                self._folded_after = row.id
                self._folded_count += 1
            return Positions({key: _copy(p) for key, p in self._folded.positions.items()})

    def _day_start(self) -> int:
        now = self.ctx.clock()
        return now - now % DAY_US

    def _realised_before(self, day_start: int) -> Decimal:
        if self._day is not None and self._day[0] == day_start:
            return self._day[1]
        t = schema.fills
        before = Positions()
        with self.ctx.engine.connect() as conn:
            before.apply(_fill_of(r) for r in conn.execute(select(t).where(t.c.at_us < day_start).order_by(t.c.id)))
        realised, _ = before.pnl({})
        self._day = (day_start, realised)
        return realised

    def marks(self, assets: list[str]) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for asset in assets:
            symbol = f"{asset}-USD"
            try:
                self.instruments.get(symbol)
            except DomainError:
                continue
            ticker = self.venue.fetch_ticker(symbol)
            if ticker.last is not None:
                out[asset] = ticker.last
        return out

    def exposure(self, client_id: str, reference_mid: Decimal | None) -> Exposure:
        positions = self.positions()
        net = positions.net()
        marks = self.marks(sorted(net))
        realised, unrealised = positions.pnl(marks)
        with self.ctx.engine.connect() as conn:
            traded = self.client_day(conn, client_id)
        return Exposure(
            positions=net,
            marks=marks,
            daily_pnl=realised - self._realised_before(self._day_start()) + unrealised,
            client_daily_notional=traded,
            reference_mid=reference_mid,
        )

    def positions_view(self) -> dict[str, Any]:
        positions = self.positions()
        assets = sorted({asset for asset, _ in positions.positions})
        marks = self.marks(assets)
        rows = [p.view(marks.get(p.asset)) for _, p in sorted(positions.positions.items())]
        held = {}
        for record in self.custody.positions(owner=DESK):
            held[f"{record.asset}@{record.custodian}"] = record.view()
        realised, unrealised = positions.pnl(marks)
        return {
            "positions": rows,
            "net": {asset: str(q) for asset, q in sorted(positions.net().items())},
            "marks": {asset: str(m) for asset, m in marks.items()},
            "realised_pnl": str(realised),
            "unrealised_pnl": str(unrealised),
            "held_at_custodians": held,
        }

    # ------------------------------------------------------------------ risk

    def _checked(self, decision: Decision, client_id: str, symbol: str, side: str, stage: str) -> None:
        if decision.allowed:
            return
        with write_transaction(self.ctx.engine) as conn:
            self.record_denial(conn, decision, client_id, symbol, side, stage)
        decision.raise_if_denied()

    def record_denial(
        self, conn: Connection, decision: Decision, client_id: str, symbol: str, side: str, stage: str
    ) -> None:
        """A risk denial as an event (`desk.risk_denied`), in the caller's transaction."""
        events.append(
            conn,
            [
                events.NewEvent(
                    "desk.risk_denied",
                    f"{symbol}:{client_id}",
                    {"code": decision.code, "reason": decision.reason, "instrument": symbol, "side": side,
                     "stage": stage, "client": client_id},
                    client_id,
                )
            ],
            self.ctx.clock(),
        )  # fmt: skip
        log.info("risk denied client=%s instrument=%s code=%s stage=%s", client_id, symbol, decision.code, stage)

    # ----------------------------------------------------------------- quote

    def quote(
        self,
        client_ref: str,
        symbol: str,
        side: str,
        *,
        quantity: object = None,
        notional: object = None,
        pay_with: str = "usd",
        network: str | None = None,
    ) -> Quote:
        """A firm price for `quantity` (base asset) or `notional` (USD) of `symbol`, open for the TTL."""
        if side not in SIDES:
            raise DomainError(f"side is buy or sell, was {side!r}", code="invalid_request")
        if (quantity is None) == (notional is None):
            raise DomainError("a quote asks for a quantity or a notional, one of them", code="invalid_request")
        if pay_with not in PAY_WITH:
            raise DomainError(f"pay_with is one of {', '.join(PAY_WITH)}, was {pay_with!r}", code="invalid_request")
        if pay_with == "deposit_token":
            if side != "buy":
                raise DomainError(
                    "deposit tokens pay for a buy; a sale's proceeds go to the DDA", code="invalid_request"
                )
            if not network:
                raise DomainError("paying in deposit tokens names their network", code="invalid_request")
            self.tokens.token_address(network)
        elif network is not None:
            raise DomainError("a network is named only when paying in deposit tokens", code="invalid_request")
        client = self.clients.active(client_ref)
        self.clients.compliance.require(client.id, flow="desk_trade")
        instrument = self.instruments.get(symbol)
        custodian = self.settings.custodian
        self._network_of(instrument.base)  # (the custodian itself is asked when the trade is accepted)
        tier_name = self.tier_of(client.id)
        tier = self.settings.risk.tiers.get(tier_name)
        if tier is None:
            raise DomainError(f"client {client.id} has tier {tier_name!r}, not configured", code="unknown_tier")
        spread = Decimal(tier.spread_bps)
        wanted_minor: int | None = None
        if quantity is not None:
            size = _decimal(quantity, "quantity")
            instrument.lots(size)
        else:
            wanted = _decimal(notional, "notional")
            if wanted != wanted.quantize(CENT):
                raise DomainError(f"notional {wanted} has more than 2 decimals", code="excess_precision")
            wanted_minor = int(wanted / CENT)
        price, size, notional_minor, book = self.venue_price(
            instrument, side, spread, size=None if wanted_minor is not None else size, notional_minor=wanted_minor
        )
        order = RiskOrder(client.id, tier_name, instrument, side, size, price)
        self._checked(self.risk.check(order, self.exposure(client.id, book.mid)), client.id, instrument.symbol,
                      side, "quote")  # fmt: skip
        now = self.ctx.clock()
        quote = Quote(
            self.ledger.ids.new_id(), client.id, instrument.symbol, side, size, price, notional_minor,
            book.mid or price, spread, pay_with, network, custodian, OPEN, now,
            now + int(self.settings.quote_ttl_s * 1_000_000), None, None,
        )  # fmt: skip
        with write_transaction(self.ctx.engine) as conn:
            conn.execute(
                schema.quotes.insert().values(
                    id=quote.id, client_id=quote.client, instrument=quote.instrument, side=side,
                    quantity=str(size), price=str(price), notional_minor=notional_minor, mid=str(quote.mid),
                    spread_bps=str(spread), pay_with=pay_with, network=network, custodian=custodian, status=OPEN,
                    created_at_us=now, expires_at_us=quote.expires_at_us, decided_at_us=None, trade_id=None,
                )
            )  # fmt: skip
        return quote

    def venue_price(
        self,
        instrument: Instrument,
        side: str,
        spread_bps: Decimal,
        *,
        size: Decimal | None = None,
        notional_minor: int | None = None,
        book: Any = None,
    ) -> tuple[Decimal, Decimal, int, Any]:
        """The desk's price for a client's `side` of `size` (or of what `notional_minor` cents buy or
        sell): the venue's book (read now, unless given) walked for that size, plus (buy) or less
        (sell) the spread, rounded against the client to the tick; (price, size, cents, the book)."""
        book = book or self.venue.fetch_order_book(instrument.symbol)
        levels = book.asks if side == "buy" else book.bids
        factor = 1 + spread_bps * BP if side == "buy" else 1 - spread_bps * BP
        if size is None:
            assert notional_minor is not None
            size = _size_for(levels, Decimal(notional_minor) * CENT / factor, instrument)
        while True:
            filled, cost = sweep(levels, size)
            if filled < size:
                raise DomainError(
                    f"the venue's book holds {filled} {instrument.base}, not {size}", code="insufficient_liquidity"
                )
            vwap = cost / size
            if side == "buy":
                price = _round(vwap * factor, instrument.price_increment, ROUND_CEILING)
                cents = int((price * size / CENT).to_integral_value(ROUND_CEILING))
            else:
                price = _round(vwap * factor, instrument.price_increment, ROUND_FLOOR)
                cents = int((price * size / CENT).to_integral_value(ROUND_FLOOR))
            if notional_minor is None or cents <= notional_minor or size <= instrument.size_increment:
                break
            # Rounded up past the notional asked: a little less, until it fits.
            excess = Decimal(cents - notional_minor) * CENT / price
            size = _round(size - max(excess, instrument.size_increment), instrument.size_increment, ROUND_FLOOR)
        instrument.check_notional(instrument.ticks(price), instrument.lots(size))
        return price, size, cents, book

    def get_quote(self, quote_id: str, *, client: str | None = None) -> Quote:
        q = schema.quotes
        with self.ctx.engine.connect() as conn:
            row = conn.execute(select(q).where(q.c.id == quote_id)).first()
        if row is None or (client is not None and row.client_id != client):
            raise NotFound(f"no quote {quote_id}", code="quote_not_found")
        return _quote_of(row)

    def quotes(self, *, client: str | None = None, limit: int = 100) -> list[Quote]:
        q = schema.quotes
        query = select(q).order_by(q.c.created_at_us.desc(), q.c.id.desc()).limit(limit)
        if client is not None:
            query = query.where(q.c.client_id == client)
        with self.ctx.engine.connect() as conn:
            return [_quote_of(r) for r in conn.execute(query)]

    # ---------------------------------------------------------------- accept

    def accept(self, quote_id: str, *, client: str | None = None) -> Operation:
        """Accept a quote: its trade, with what it holds, recorded once; the same quote accepted again
        answers the same trade."""
        quote = self.get_quote(quote_id, client=client)
        key = trade_key(quote.id)
        existing = self.ops.find_by_key(key)
        if existing is not None:
            return existing
        if quote.status != OPEN or self.ctx.clock() >= quote.expires_at_us:
            raise self._closed(quote)
        instrument = self.instruments.get(quote.instrument)
        client_rec = self.clients.active(quote.client)
        self.clients.compliance.require(client_rec.id, flow="desk_trade")
        order = RiskOrder(quote.client, self.tier_of(quote.client), instrument, quote.side, quote.quantity, quote.price)
        exposure = self.exposure(quote.client, None)
        # The quote's own notional is already in the client's day only once it is accepted.
        self._checked(self.risk.check(order, exposure, count=False), quote.client, quote.instrument, quote.side,
                      "accept")  # fmt: skip
        payload = self.trade_payload(
            client=quote.client, instrument=instrument, side=quote.side, quantity=quote.quantity, price=quote.price,
            notional_minor=quote.notional_minor, legs=key, pay_with=quote.pay_with, token_network=quote.network,
            quote=quote.id,
        )  # fmt: skip

        def decide(conn: Connection) -> None:
            """The one decision of the quote's fate: accepted only if still open and unexpired at this
            moment, with the trade and its holds."""
            q = schema.quotes
            now = self.ctx.clock()
            done = conn.execute(
                update(q)
                .where(q.c.id == quote.id, q.c.status == OPEN, q.c.expires_at_us > now)
                .values(status=ACCEPTED, decided_at_us=now)
            )
            if done.rowcount != 1:
                raise self._closed(_quote_of(conn.execute(select(q).where(q.c.id == quote.id)).one()))
            op = self.record_trade(conn, key, payload, request={"quote": quote.id})
            conn.execute(update(q).where(q.c.id == quote.id).values(trade_id=op.id))

        self.custody.check_asset(quote.custodian, instrument.base, self._network_of(instrument.base))
        self._ensure_cash()
        self.custody.ensure_positions(quote.custodian, DESK, instrument.base)
        self.custody.ensure_positions(quote.custodian, quote.client, instrument.base)
        try:
            if quote.pay_with == "deposit_token":
                assert quote.network is not None
                self.tokens.requests.redeem(
                    client_rec.id, quote.network, quote.notional_minor, f"{key}-funding", before=decide, admit=False
                )
            else:
                with write_transaction(self.ctx.engine) as conn:
                    decide(conn)
        except Conflict:
            accepted = self.ops.find_by_key(key)  # accepted at once by a twin request: the same trade
            if accepted is None:
                raise
            return accepted
        except _Denied as denied:
            self._checked(denied.decision, quote.client, quote.instrument, quote.side, "accept")
        return self.ops.by_key(key)

    def _closed(self, quote: Quote) -> DomainError:
        status = EXPIRED if quote.status == OPEN else quote.status
        if status == EXPIRED:
            return QuoteClosed(f"quote {quote.id} expired at {events.iso(quote.expires_at_us)}; ask again")
        return Conflict(f"quote {quote.id} is {status}", code="quote_not_open")

    # ----------------------------------------------------------------- trades

    def trade_payload(
        self,
        *,
        client: str,
        instrument: Instrument,
        side: str,
        quantity: Decimal,
        price: Decimal,
        notional_minor: int,
        legs: str,
        pay_with: str = "usd",
        token_network: str | None = None,
        quote: str | None = None,
        order: int | None = None,
        hedge: bool = True,
    ) -> dict[str, Any]:
        """What a trade between a client and the desk records: `legs` names its other operations (the
        asset's transfer, a redemption, a refund). `hedge`: False for a trade the desk has matched with
        another client's (it takes no position)."""
        asset = instrument.base
        custodian = self.settings.custodian
        return {
            "quote": quote, "order": order, "legs": legs, "client": client, "instrument": instrument.symbol,
            "asset": asset, "side": side, "quantity": str(quantity), "price": str(price),
            "notional": notional_minor, "asset_amount": _minor(quantity, self.custody.scale(asset)),
            "pay_with": pay_with, "token_network": token_network, "custodian": custodian,
            "asset_network": self._network_of(asset), "hedge": hedge,
        }  # fmt: skip

    def record_trade(
        self, conn: Connection, key: str, payload: dict[str, Any], *, request: dict[str, Any], check_day: bool = True
    ) -> Operation:
        """A trade, in the caller's transaction, with what it holds: a buy paid in USD holds the
        client's DDA (-> the desk's cash), a sale holds the client's asset at the custodian (-> the
        desk's position there); its fill enters the desk's positions. A buy paid in deposit tokens holds
        once their redemption is final (the `fund` step)."""
        if check_day:
            self._check_day(conn, payload)
        # Compliance (KYC, freeze, tier limits) decides a trade the client asks for now (an RFQ); an order
        # on the book was decided, and counted, when it was placed.
        if check_day:
            self.clients.compliance.admit(
                conn, payload["client"], "desk_trade", int(payload["notional"]), f"desk_trade:{key}"
            )
        self._ensure_cash(conn)
        p = payload
        # A buy paid in tokens has its redemption recorded with it and sent at once: in flight from the
        # start (an operator cannot cancel it from under its redemption).
        state: dict[str, Any] = {"reserved": True}
        if p["pay_with"] == "deposit_token" or p.get("after"):
            # A buy paid in tokens has its redemption recorded with it; a buy matched on the book is
            # delivered by its seller's transfer: either is in flight from the start (an operator
            # cancels neither from under its other half).
            state["done"] = ["accepted"]
        op, created = self.ops.create(TRADE, key, payload, request=request, conn=conn, state=state)
        if not created:
            raise Conflict(f"trade {key} was recorded already", code="quote_not_open")
        self._record_fill(conn, self._client_fill(payload, op.id))
        memo = f"{TRADE} {op.id} " + (f"quote {p['quote']}" if p.get("quote") else f"order {p.get('order')}")
        try:
            if p["side"] == "sell":  # (both positions exist: made before the transaction, see accept)
                holds.reserve(
                    self.ledger, asset_hold(op.id),
                    self.ledger.account(position_account(p["custodian"], p["client"], p["asset"]), conn=conn).id,
                    self.ledger.account(position_account(p["custodian"], DESK, p["asset"]), conn=conn).id,
                    int(p["asset_amount"]), p["asset"], memo=memo, conn=conn,
                )  # fmt: skip
            elif p["pay_with"] == "usd":
                holds.reserve(
                    self.ledger, cash_hold(op.id), self.ledger.account(dda_account(p["client"]), conn=conn).id,
                    self.ledger.account(DESK_CASH, conn=conn).id, int(p["notional"]), "USD", memo=memo, conn=conn,
                )  # fmt: skip
        except holds.LedgerRefused as exc:
            what = f"{p['quantity']} {p['asset']} at {p['custodian']}" if p["side"] == "sell" else "the price"
            raise DomainError(
                f"client {p['client']} does not have {what} available: {exc.message}", code="insufficient_funds"
            ) from None
        return op

    def client_day(self, conn: Connection, client: str) -> Decimal:
        """What the client traded today (USD), its trades' notional less the trades that failed, and what
        its orders resting on the book would trade at their limits (they fill without asking again)."""
        f = schema.fills
        rows = conn.execute(
            select(f.c.ref, f.c.notional_minor).where(
                f.c.client_id == client, f.c.source == "client", f.c.at_us >= self._day_start()
            )
        ).all()
        # A trade that failed gives its room back to the day it was made in, not to the day it failed.
        today = {r.ref for r in rows if not r.ref.endswith(":reversal")}
        cents = 0
        for r in rows:
            if r.ref in today:
                cents += int(r.notional_minor)
            elif r.ref.removesuffix(":reversal") in today:
                cents -= int(r.notional_minor)
        total = Decimal(cents) * CENT
        o = schema.orders
        resting = conn.execute(
            select(o.c.price, o.c.quantity, o.c.filled).where(
                o.c.client_id == client, o.c.status == "open", o.c.price.is_not(None)
            )
        ).all()
        return total + sum((Decimal(r.price) * (Decimal(r.quantity) - Decimal(r.filled)) for r in resting), Decimal(0))

    def check_day(self, conn: Connection, payload: dict[str, Any]) -> None:
        self._check_day(conn, payload)

    def _check_day(self, conn: Connection, payload: dict[str, Any]) -> None:
        """The client's daily notional with this trade, summed again inside the recording transaction
        under a lock of the client's (PostgreSQL; SQLite writes one at a time): two accepts at once
        never both pass on the same room."""
        client = payload["client"]
        if conn.dialect.name == "postgresql":
            digest = hashlib.sha256(f"desk-day:{client}".encode()).digest()
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:k)"), {"k": int.from_bytes(digest[:8], "big", signed=True)}
            )
        tier_name = self.tier_of(client)
        tier = self.settings.risk.tiers.get(tier_name)
        if tier is None:
            return
        total = self.client_day(conn, client) + Decimal(int(payload["notional"])) * CENT
        if total > Decimal(tier.max_daily_notional):
            raise _Denied(
                Decision(
                    False,
                    "daily_notional_exceeded",
                    f"this order would bring today's trading to {total:.2f} USD, above {tier.max_daily_notional} USD",
                )
            )

    # ---------------------------------------------------------------- expiry

    def expire_due(self) -> int:
        """Every open quote past its life, expired (once: the conditional update races an accept)."""
        q = schema.quotes
        now = self.ctx.clock()
        with self.ctx.engine.connect() as conn:
            due = conn.execute(
                select(q.c.id, q.c.client_id, q.c.instrument)
                .where(q.c.status == OPEN, q.c.expires_at_us <= now)
                .limit(EXPIRE_BATCH)
            ).all()
        expired = 0
        for row in due:
            with write_transaction(self.ctx.engine) as conn:
                done = conn.execute(
                    update(q)
                    .where(q.c.id == row.id, q.c.status == OPEN, q.c.expires_at_us <= now)
                    .values(status=EXPIRED, decided_at_us=now)
                )
                if done.rowcount == 1:
                    expired += 1
                    events.append(
                        conn,
                        [events.NewEvent("desk.quote_expired", row.id, {"quote": row.id,
                                                                        "instrument": row.instrument}, row.client_id)],
                        now,
                    )  # fmt: skip
        return expired

    # ----------------------------------------------------------------- trade

    def step(self, op: Operation) -> None:
        done = op.state.get("done") or []
        p = op.payload
        if p["side"] == "buy":
            if p["pay_with"] == "deposit_token" and "fund" not in done:
                self._fund(op)
            elif "execute" not in done:
                self._execute(op)
            else:
                self._deliver(op)
        elif "deliver" not in done:
            self._deliver(op)
        elif "execute" not in done:
            self._execute(op)
        else:
            self._settle(op, None)

    def _wait_us(self, op: Operation) -> int:
        """How long a trade waits for its other operation before it looks again: briefly while young."""
        age_us = max(0, self.ctx.clock() - op.created_at_us)
        return min(WAIT_US, max(WAIT_MIN_US, age_us // 20))

    def _wait(self, op: Operation, detail: str = "") -> None:
        self.ops.update_if_current(op, retry_in_us=self._wait_us(op), detail=detail)

    def _mark(self, op: Operation, step: str, conn: Connection | None = None, **state: Any) -> Operation | None:
        done = [*(op.state.get("done") or []), step]
        return self.ops.update_if_current(
            op, status=OpStatus.SUBMITTED, state={**op.state, **state, "done": done}, detail=step, conn=conn
        )

    def _fund(self, op: Operation) -> None:
        """A buy paid in deposit tokens: once their redemption is final, the DDA it credited is held."""
        funding = self.ops.by_key(f"{op.payload['legs']}-funding")
        if not funding.terminal:
            self._wait(op)
            return
        if funding.status != OpStatus.SUCCEEDED:
            self._fail(op, "funding_failed", f"the redemption of the deposit tokens {funding.id} {funding.status}")
            return
        p = op.payload
        try:
            with write_transaction(self.ctx.engine) as conn:
                if self._mark(op, "fund", conn, funding=funding.id) is None:
                    return
                holds.reserve(
                    self.ledger, cash_hold(op.id), self.ledger.account(dda_account(p["client"]), conn=conn).id,
                    self.ledger.account(DESK_CASH, conn=conn).id, int(p["notional"]), "USD",
                    memo=f"{TRADE} {op.id} quote {p['quote']}", conn=conn,
                )  # fmt: skip
        except holds.LedgerRefused as exc:
            # Spent from the DDA between the redemption and now: nothing traded; the client keeps USD.
            self._fail(op, "funding_lost", f"the redeemed USD is no longer in the DDA: {exc.message}")

    def _execute(self, op: Operation) -> None:
        """Hedge or internalise, decided once (recorded before anything is sent); a hedge sent once under
        the trade's client order id, looked up by it before any second attempt, and recorded when the
        venue reports it done."""
        p = op.payload
        asset = p["asset"]
        quantity = Decimal(p["quantity"])
        desk_side = "sell" if p["side"] == "buy" else "buy"
        execution = op.state.get("execution")
        if execution is None:
            # The client's trade is in the positions since it was accepted: what the desk held before it
            # is the net less this trade.
            after = self.positions().net().get(asset, Decimal(0))
            before = after - (quantity if desk_side == "buy" else -quantity)
            limit = Decimal(self.settings.internalise_max.get(asset, "0"))
            # A trade matched with another client's order leaves the desk flat: nothing to hedge.
            hedge = bool(p.get("hedge", True)) and not (abs(after) <= limit or abs(after) < abs(before))
            execution = {"hedge": hedge, "client_order_id": f"andchain-{op.id}", "venue": self.venue.name}
            # From here the trade may have reached the venue: an operator can no longer cancel it.
            updated = self.ops.update_if_current(
                op, state={**op.state, "execution": execution, "done": [*op.state.get("done", []), "decided"]},
                detail=f"hedging on {self.venue.name}" if hedge else "internalised",
            )  # fmt: skip
            if updated is None:
                return
            op = updated
            failpoints.hit("desk_trade:execute:decided")
        fill: dict[str, Any] | None = None
        if execution["hedge"] and not execution.get("refused"):
            hedge_side = "buy" if desk_side == "sell" else "sell"
            client_order_id = execution["client_order_id"]
            try:
                placed = None
                if execution.get("order"):
                    placed = self.venue.fetch_order(execution["order"], p["instrument"])
                elif execution.get("sending"):
                    placed = self.venue.find_order(client_order_id, p["instrument"])
                else:
                    sending = {**op.state, "execution": {**execution, "sending": True}}
                    updated = self.ops.update_if_current(op, state=sending)
                    if updated is None:
                        return
                    op, execution = updated, {**execution, "sending": True}
                if placed is None:
                    placed = self.venue.create_order(
                        p["instrument"], "market", hedge_side, quantity, None, {"clientOrderId": client_order_id}
                    )
            except VenueUnavailable as exc:
                postpone(self.ops, op, exc)
                return
            except VenueRefused as exc:
                log.error("hedge refused op=%s venue=%s: %s: the desk keeps the risk", op.id, self.venue.name, exc)
                execution = {**execution, "refused": exc.message[:300]}
            else:
                failpoints.hit("desk_trade:execute:after_hedge")
                execution = {**execution, "order": placed.id, "filled": str(placed.filled)}
                if placed.status == "open":
                    # Not done at the venue yet: its fills are read when it is.
                    self.ops.update_if_current(op, state={**op.state, "execution": execution}, retry_in_us=WAIT_US)
                    return
                fill = self._hedge_fill(op, placed, hedge_side)
        with write_transaction(self.ctx.engine) as conn:
            if self._mark(op, "execute", conn, execution=execution) is None:
                return
            if fill is not None:
                self._record_fill(conn, fill)
        failpoints.hit("desk_trade:execute:recorded")

    def _hedge_fill(self, op: Operation, placed: Any, side: str) -> dict[str, Any] | None:
        p = op.payload
        if placed.filled <= 0:
            return None
        average = placed.average if placed.average is not None else placed.cost / placed.filled
        if not average > 0 or not placed.fee.is_finite():
            log.error("hedge of op=%s reported without a usable price: %r; not recorded", op.id, placed)
            return None
        return {
            "ref": f"trade:{op.id}:hedge", "source": "hedge", "trade_id": op.id, "client_id": None,
            "instrument": p["instrument"], "asset": p["asset"], "place": f"venue:{self.venue.name}",
            "side": side, "quantity": str(placed.filled), "price": str(average), "fee": str(placed.fee),
            "notional_minor": int((placed.filled * average / CENT).to_integral_value(ROUND_FLOOR)),
        }  # fmt: skip

    @staticmethod
    def _client_fill(p: dict[str, Any], op_id: str, *, reversal: bool = False) -> dict[str, Any]:
        """The desk's side of a client's trade, in its positions from the moment it is accepted (trade
        date); a trade that fails is reversed by the mirror fill at the same price."""
        desk_side = "sell" if p["side"] == "buy" else "buy"
        if reversal:
            desk_side = "buy" if desk_side == "sell" else "sell"
        return {
            "ref": f"trade:{op_id}:client" + (":reversal" if reversal else ""), "source": "client",
            "trade_id": op_id, "client_id": p["client"], "instrument": p["instrument"], "asset": p["asset"],
            "place": f"custodian:{p['custodian']}", "side": desk_side, "quantity": p["quantity"],
            "price": p["price"], "fee": "0", "notional_minor": int(p["notional"]),
        }  # fmt: skip

    def _record_fill(self, conn: Connection, fill: dict[str, Any]) -> None:
        try:
            with conn.begin_nested():
                conn.execute(schema.fills.insert().values(**fill, at_us=self.ctx.clock()))
        except IntegrityError:
            pass  # recorded by an earlier attempt (the same ref)

    def _deliver(self, op: Operation) -> None:
        """The asset leg: the custody internal transfer, made (a buy) and awaited."""
        p = op.payload
        if op.state.get("refund") or op.state.get("asset_leg") == "refused":
            self._compensate(op, op.error_code or "asset_leg_refused", "compensating")  # resumed after a crash
            return
        if p["side"] == "buy" and p.get("after"):
            self._receive_matched(op)
            return
        key = f"{p['legs']}-asset"
        leg = self.ops.find_by_key(key)
        if leg is None:
            # A sale goes to the desk; one matched on the book straight to its buyer.
            source, target = (DESK, p["client"]) if p["side"] == "buy" else (p["client"], p.get("deliver_to") or DESK)

            def handed_over(conn: Connection) -> None:
                """With the transfer: a sale's asset hold gives way to the transfer's own, and the trade is
                in flight (a concurrent cancel makes this stale: nothing is recorded)."""
                if p["side"] == "sell":
                    holds.void(self.ledger, asset_hold(op.id), conn=conn)
                marked = [*(op.state.get("done") or []), "asset_sent"]
                if self.ops.update_if_current(op, state={**op.state, "done": marked}, conn=conn) is None:
                    raise Conflict(f"trade {op.id} changed meanwhile", code="operation_changed")

            try:
                leg = self.custody.transfer(
                    p["custodian"], source, target, p["asset"], p["asset_network"], int(p["asset_amount"]), key,
                    before=handed_over, admit=False,
                )  # fmt: skip
                failpoints.hit("desk_trade:deliver:after_leg")
            except Conflict as exc:
                if exc.code == "operation_changed":
                    return  # read again by the next round
                raise
            except DomainError as exc:
                if exc.transient:
                    raise
                # Refused before anything was sent (the desk lacks the asset, the client's account is
                # gone): recorded with the release of the cash, never tried again.
                self._compensate(op, "asset_leg_refused", f"the desk cannot deliver: {exc.message}", refused=True)
                return
        if not leg.terminal:
            if op.state.get("asset_leg") != leg.id:
                if leg.status == OpStatus.RECEIVED:
                    # Sent now rather than at the worker's next round (safe beside another worker: the
                    # custody operation sends once, whoever steps it).
                    try:
                        self.custody.step(leg)
                    except DomainError as exc:
                        if not exc.transient:
                            raise
                current = self.ops.get(op.id)
                if current.version != op.version:
                    return
                self.ops.update_if_current(
                    op, status=OpStatus.CONFIRMING, state={**op.state, "asset_leg": leg.id},
                    retry_in_us=self._wait_us(op), detail=f"asset leg {leg.id} at custodian {p['custodian']}",
                )  # fmt: skip
            else:
                self._wait(op)
            return
        if leg.status != OpStatus.SUCCEEDED:
            self._compensate(
                op, "asset_leg_failed", f"the custodian's transfer {leg.id} {leg.status}: {leg.error_message or ''}"
            )
            return
        if p["side"] == "sell":
            self._mark(op, "deliver", asset_leg=leg.id)
            return
        self._settle(op, leg)

    def _receive_matched(self, op: Operation) -> None:
        """A buy matched on the book: its asset comes with the matched sale's transfer, straight from the
        seller; settled once that transfer completes, released if it does not."""
        p = op.payload
        leg = self.ops.find_by_key(f"{p['after']}-asset")
        if leg is None:
            sale = self.ops.find_by_key(p["after"])
            if sale is None or sale.status in (OpStatus.FAILED, OpStatus.CANCELLED):
                self._compensate(op, "counterparty_failed", f"the matched sale {p['after']} ended without delivering")
            else:
                self._wait(op)
            return
        if not leg.terminal:
            if op.state.get("asset_leg") != leg.id:
                self.ops.update_if_current(
                    op, status=OpStatus.CONFIRMING, state={**op.state, "asset_leg": leg.id},
                    retry_in_us=self._wait_us(op), detail=f"delivered by the matched sale's transfer {leg.id}",
                )  # fmt: skip
            else:
                self._wait(op)
            return
        if leg.status != OpStatus.SUCCEEDED:
            self._compensate(op, "counterparty_failed", f"the matched sale's transfer {leg.id} {leg.status}")
            return
        self._settle(op, leg)

    def _settle(self, op: Operation, leg: Operation | None) -> None:
        """Both legs: the asset delivered, the cash posted, in one transaction."""
        p = op.payload
        leg_id = leg.id if leg is not None else op.state.get("asset_leg")
        with write_transaction(self.ctx.engine) as conn:
            ended = self.ops.update_if_current(
                op, status=OpStatus.SUCCEEDED,
                result={"quote": p["quote"], "asset_leg": leg_id, "price": p["price"], "quantity": p["quantity"],
                        "notional": str((Decimal(int(p["notional"])) * CENT).quantize(CENT))},
                detail="settled: the asset delivered and the cash posted", conn=conn,
            )  # fmt: skip
            if ended is None:
                return
            if p["side"] == "buy":
                holds.post(self.ledger, cash_hold(op.id), conn=conn)
            else:
                holds.book(
                    self.ledger,
                    [self._cash_out(conn, op, int(p["notional"]))],
                    conn=conn,
                    what=f"{TRADE} {op.id} proceeds",
                )
            if p.get("quote"):
                self._quote_status(conn, p["quote"], SETTLED)
        failpoints.hit("desk_trade:settled")

    def _cash_out(self, conn: Connection, op: Operation, amount: int) -> Any:
        from andchain.ledger import TransferSpec

        return TransferSpec(
            self.ledger.account(DESK_CASH, conn=conn).id,
            self.ledger.account(dda_account(op.payload["client"]), conn=conn).id,
            amount,
            id=f"{TRADE}:{op.id}:proceeds",
            asset="USD",
            code=TRADE,
            memo=f"{TRADE} {op.id} quote {op.payload['quote']}",
        )

    def _quote_status(self, conn: Connection, quote_id: str, status: str) -> None:
        q = schema.quotes
        conn.execute(update(q).where(q.c.id == quote_id, q.c.status == ACCEPTED).values(status=status))

    def _compensate(self, op: Operation, code: str, reason: str, *, refused: bool = False) -> None:
        """The asset leg did not happen: the cash held is released; tokens redeemed for it come back.
        What was decided is recorded with the release, so that a retry after a crash only finishes it."""
        p = op.payload
        if p["side"] == "buy" and p["pay_with"] == "deposit_token" and "fund" in (op.state.get("done") or []):
            if not op.state.get("refund"):
                state = {**op.state, "refund": "voiding", "failure": [code, reason]}
                if refused:
                    state["asset_leg"] = "refused"
                with write_transaction(self.ctx.engine) as conn:
                    updated = self.ops.update_if_current(op, state=state, detail=f"compensating: {reason}", conn=conn)
                    if updated is None:
                        return
                    holds.void(self.ledger, cash_hold(op.id), conn=conn)
                op = updated
            code, reason = op.state.get("failure") or (code, reason)
            refund = self.tokens.mint(p["client"], p["token_network"], int(p["notional"]),
                                      f"{p['legs']}-refund")  # fmt: skip
            self._fail(op, code, f"{reason}; the deposit tokens are minted back ({refund.id})", refund=refund.id)
            return
        self._fail(op, code, reason)

    def _fail(self, op: Operation, code: str, reason: str, **result: Any) -> None:
        """The trade ends failed: its cash hold released (unless a compensation did), its quote failed,
        its client fill reversed; in one transaction."""
        with write_transaction(self.ctx.engine) as conn:
            ended = self.ops.update_if_current(
                op, status=OpStatus.FAILED, error=(code, reason), result={"quote": op.payload["quote"], **result},
                detail=reason, conn=conn,
            )  # fmt: skip
            if ended is None:
                return
            self._unwind(op, conn)

    def _unwind(self, op: Operation, conn: Connection) -> None:
        p = op.payload
        done = op.state.get("done") or []
        if p["side"] == "buy" and (p["pay_with"] == "usd" or "fund" in done):
            holds.void(self.ledger, cash_hold(op.id), conn=conn)  # again: a no-op
        if p["side"] == "sell" and "asset_sent" not in done:
            holds.void(self.ledger, asset_hold(op.id), conn=conn)
        self._record_fill(conn, self._client_fill(op.payload, op.id, reversal=True))
        if p.get("quote"):
            self._quote_status(conn, p["quote"], FAILED)
        if p.get("order") is not None:
            self._order_trade_failed(conn, op)

    def _order_trade_failed(self, conn: Connection, op: Operation) -> None:
        """An order's trade failed: an order that has ended no longer counts it as filled (what failed is
        not put back on the book); a resting order keeps it counted, with the reason noted."""
        o = schema.orders
        p = op.payload
        row = conn.execute(select(o).where(o.c.id == int(p["order"]))).first()
        if row is None:
            return
        reason = f"trade_failed:{op.id}"[:200]
        if row.status == "open":
            conn.execute(update(o).where(o.c.id == row.id).values(reason=reason, updated_at_us=self.ctx.clock()))
            return
        quantity, price = Decimal(p["quantity"]), Decimal(p["price"])
        filled = max(Decimal(0), Decimal(row.filled) - quantity)
        values: dict[str, Any] = {
            "filled": format(filled.normalize(), "f"),
            "cost": str(Decimal(row.cost) - price * quantity),
            "reason": reason,
            "updated_at_us": self.ctx.clock(),
        }
        if row.status == "filled":
            values["status"] = "cancelled"
        conn.execute(update(o).where(o.c.id == row.id).values(**values))

    def release(self, op: Operation, conn: Connection) -> None:
        """An operator cancelled the trade before anything of it left (a buy paid in tokens, whose
        redemption goes with it, never is: see `record_trade`): what it holds is released, its fill
        reversed, its quote failed."""
        self._unwind(op, conn)


def _round(value: Decimal, step: Decimal, rounding: str) -> Decimal:
    return (value / step).to_integral_value(rounding) * step


def _size_for(levels: list[tuple[Decimal, Decimal]], notional: Decimal, instrument: Instrument) -> Decimal:
    """The size a notional buys (or sells) walking `levels`, rounded down to the lot."""
    left, size = notional, Decimal(0)
    for price, available in levels:
        take = min(available, left / price)
        size += take
        left -= take * price
        if left <= 0:
            break
    size = _round(size, instrument.size_increment, ROUND_FLOOR)
    if size <= 0:
        raise DomainError(f"{notional} USD buys less than one lot of {instrument.base}", code="size_out_of_range")
    return size


def _fill_of(row: Any) -> Fill:
    return Fill(row.asset, row.place, row.side, Decimal(row.quantity), Decimal(row.price), Decimal(row.fee))


def _copy(p: Any) -> Any:
    from dataclasses import replace

    return replace(p)


class DeskHandler:
    """The worker's handler of trades."""

    kinds = KINDS

    def __init__(self, desk: DeskService) -> None:
        self.desk = desk
        self.ops = desk.ops

    def advance(self, ops: list[Operation]) -> None:
        """Each trade on its own: a venue or a custodian that does not answer postpones only the trade
        that asked it."""
        for op in ops:
            try:
                self.desk.step(op)
            except DomainError as exc:
                if not exc.transient:
                    raise
                postpone(self.ops, op, exc)

    def recover(self) -> None:
        """Nothing: every step finds what an earlier attempt did by its key."""

    def release(self, op: Operation, conn: Connection) -> None:
        self.desk.release(op, conn)

    def quarantine(self, op: Operation, exc: BaseException) -> None:
        current = self.ops.get(op.id)
        if current.terminal or current.status == OpStatus.NEEDS_ATTENTION:
            return
        self.ops.attention(current, "internal_error", f"{type(exc).__name__}: {exc}")


class QuoteExpiryPart:
    """Expires the quotes past their life (accept refuses them anyway: this makes it seen)."""

    name = "desk-quotes"

    def __init__(self, desk: DeskService, monotonic: Callable[[], float] = time.monotonic) -> None:
        self.desk = desk
        self.monotonic = monotonic
        self.next_s = 0.0
        self.expired = 0

    def run(self) -> None:
        if self.monotonic() < self.next_s:
            return
        self.expired = self.desk.expire_due()
        self.next_s = self.monotonic() + (0.0 if self.expired >= EXPIRE_BATCH else 1.0)

    def idle(self) -> bool:
        return True

    def status(self) -> dict[str, Any]:
        return {"expired": self.expired}


__all__ = ["DeskHandler", "DeskService", "Quote", "QuoteClosed", "QuoteExpiryPart"]
