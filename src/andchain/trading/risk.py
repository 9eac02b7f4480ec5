"""Pre-trade risk: the bank's risk appetite, checked before any order or quote is taken.

Every check answers a `Decision`: allowed, or denied with a stable reason code and words a client
can read. The checks, in order (the first denial is the answer):

1. the desk's trading state, global and per instrument (`desk_states`): HALTED refuses everything;
   REDUCING refuses what would grow the desk's position in the asset (`trading_halted`,
   `reducing_only`);
2. the client's tier: the instrument allowed (`instrument_not_allowed`), the order's notional
   (`order_notional_exceeded`), the day's notional with this order (`daily_notional_exceeded`);
3. the submit rate per client (`rate_limited`);
4. the price band: a limit price at most `price_band_bps` from the reference mid
   (`price_out_of_band`);
5. the desk's appetite, with the desk taking the other side of the client's order: the net
   position per asset (`position_limit`), the gross exposure at the mark (`gross_exposure_limit`),
   the day's loss so far (`daily_loss_limit`: no new risk once it is reached; reducing trades go
   on).

The engine reads nothing but what it is given (`Exposure`) and the states: the caller (RFQ, the
book) supplies the desk's positions and the client's day, and emits the denial as an event.
"""

from __future__ import annotations

import enum
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal

from sqlalchemy import BigInteger, Column, Engine, String, Table, Text, select, update

from andchain.config import RiskSettings
from andchain.db import metadata, write_transaction
from andchain.errors import DomainError
from andchain.events import store as events
from andchain.trading.instruments import Instrument

BP = Decimal("0.0001")
GLOBAL = "*"

desk_states = Table(
    "desk_states",
    metadata,
    Column("scope", String(32), primary_key=True),  # "*" (the whole desk) or an instrument
    Column("state", String(16), nullable=False),
    Column("reason", Text, nullable=False),
    Column("changed_by", String(200), nullable=False),
    Column("changed_at_us", BigInteger, nullable=False),
)


class TradingState(enum.StrEnum):
    ACTIVE = "active"
    REDUCING = "reducing"
    HALTED = "halted"


class RiskDenied(DomainError):
    """An order the bank's risk appetite refuses; `code` says which check."""

    code = "risk_denied"
    http_status = 422


@dataclass(frozen=True)
class Decision:
    allowed: bool
    code: str | None = None
    reason: str | None = None

    def raise_if_denied(self) -> None:
        if not self.allowed:
            raise RiskDenied(self.reason or "denied", code=self.code or "risk_denied")


ALLOWED = Decision(True)


@dataclass(frozen=True)
class RiskOrder:
    client: str
    tier: str | None
    instrument: Instrument
    side: str  # the client's side: buy | sell
    size: Decimal  # in the base asset
    price: Decimal  # the limit, or the price the order would trade at (a quote)


@dataclass
class Exposure:
    """What the caller knows when it asks: the desk's positions (per asset, signed), the marks
    (USD per unit), the desk's P&L of the day (USD, negative when losing), the client's notional
    traded today (USD), and the reference mid of the instrument."""

    positions: Mapping[str, Decimal] = field(default_factory=dict)
    marks: Mapping[str, Decimal] = field(default_factory=dict)
    daily_pnl: Decimal = Decimal(0)
    client_daily_notional: Decimal = Decimal(0)
    reference_mid: Decimal | None = None


class States:
    """The desk's trading states, kept in the database (every process sees a halt at once)."""

    def __init__(self, engine: Engine, clock: Callable[[], int]) -> None:
        self.engine = engine
        self.clock = clock

    def all(self) -> dict[str, tuple[TradingState, str]]:
        with self.engine.connect() as conn:
            rows = conn.execute(select(desk_states)).all()
        return {r.scope: (TradingState(r.state), r.reason) for r in rows}

    def of(self, symbol: str) -> tuple[TradingState, str]:
        """The stricter of the desk's and the instrument's state."""
        states = self.all()
        order = [TradingState.ACTIVE, TradingState.REDUCING, TradingState.HALTED]
        found = [states.get(GLOBAL, (TradingState.ACTIVE, "")), states.get(symbol, (TradingState.ACTIVE, ""))]
        return max(found, key=lambda s: order.index(s[0]))

    def set(self, state: TradingState, *, scope: str = GLOBAL, reason: str, by: str) -> None:
        if not reason.strip():
            raise DomainError("a change of the desk's state says why", code="invalid_request")
        now = self.clock()
        values = dict(state=state.value, reason=reason[:2000], changed_by=by[:200], changed_at_us=now)
        with write_transaction(self.engine) as conn:
            done = conn.execute(update(desk_states).where(desk_states.c.scope == scope).values(**values))
            if done.rowcount == 0:
                conn.execute(desk_states.insert().values(scope=scope, **values))
            events.append(
                conn,
                [
                    events.NewEvent(
                        "desk.state_changed",
                        scope,
                        {"scope": "desk" if scope == GLOBAL else scope, "state": state.value,
                         "reason": values["reason"], "by": values["changed_by"]},
                    )
                ],
                now,
            )  # fmt: skip


class RateLimiter:
    """At most `rate` submits per client in any `window_s` (in this process)."""

    def __init__(self, rate: int, window_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.rate, self.window_s, self.clock = rate, window_s, clock
        self._seen: dict[str, deque[float]] = defaultdict(deque)
        self._lock = threading.Lock()

    def allow(self, client: str) -> bool:
        now = self.clock()
        with self._lock:
            seen = self._seen[client]
            while seen and seen[0] <= now - self.window_s:
                seen.popleft()
            if len(seen) >= self.rate:
                return False
            seen.append(now)
            return True


class RiskEngine:
    def __init__(self, settings: RiskSettings, states: States, *, limiter: RateLimiter | None = None) -> None:
        self.settings = settings
        self.states = states
        self.limiter = limiter or RateLimiter(settings.submit_rate, settings.submit_window_s)

    def check(self, order: RiskOrder, exposure: Exposure, *, count: bool = True, principal: bool = True) -> Decision:
        """The first denial, or allowed. `count`: this is a new submit (counted by the rate limit); an
        accept of a quote already counted is checked again without it. `principal`: the desk takes the
        other side (a quote, a routed order); an order matched between clients on the book leaves the
        desk flat, so the desk's appetite (and a reducing desk) does not apply to it."""
        symbol, base = order.instrument.symbol, order.instrument.base
        # The desk takes the other side: a client's buy makes the desk shorter.
        desk_change = -order.size if order.side == "buy" else order.size
        position = exposure.positions.get(base, Decimal(0))
        after = position + desk_change
        reduces = abs(after) < abs(position)

        state, why = self.states.of(symbol)
        if state is TradingState.HALTED:
            return Decision(False, "trading_halted", f"trading in {symbol} is halted: {why}")
        if state is TradingState.REDUCING and not reduces and principal:
            return Decision(
                False, "reducing_only", f"the desk takes only trades that reduce its {base} position: {why}"
            )

        tier_name = order.tier or self.settings.default_tier
        tier = self.settings.tiers.get(tier_name)
        if tier is None or symbol not in tier.instruments:
            return Decision(False, "instrument_not_allowed", f"{symbol} is not open to clients of tier {tier_name}")
        notional = order.size * order.price
        if notional > Decimal(tier.max_order_notional):
            return Decision(
                False,
                "order_notional_exceeded",
                f"an order of {notional:.2f} USD is above the {tier.max_order_notional} USD "
                f"a {tier_name} client may place",
            )
        if exposure.client_daily_notional + notional > Decimal(tier.max_daily_notional):
            return Decision(
                False,
                "daily_notional_exceeded",
                f"this order would bring today's trading to {exposure.client_daily_notional + notional:.2f} USD, above "
                f"{tier.max_daily_notional} USD",
            )
        if count and not self.limiter.allow(order.client):
            return Decision(False, "rate_limited", "too many orders in a short time; try again in a moment")
        if exposure.reference_mid is not None and order.price > 0:
            band = exposure.reference_mid * Decimal(self.settings.price_band_bps) * BP
            if abs(order.price - exposure.reference_mid) > band:
                return Decision(
                    False,
                    "price_out_of_band",
                    f"{order.price} is more than {self.settings.price_band_bps} bp from the reference "
                    f"{exposure.reference_mid:.2f}",
                )
        if principal and not reduces:
            limit = self.settings.max_net_position.get(base)
            if limit is not None and abs(after) > Decimal(limit):
                return Decision(
                    False,
                    "position_limit",
                    f"the desk may hold at most {limit} {base} either way; this would make {after}",
                )
            gross = sum(
                (
                    abs(size) * exposure.marks.get(asset, Decimal(0))
                    for asset, size in {**exposure.positions, base: after}.items()
                ),
                Decimal(0),
            )
            if gross > Decimal(self.settings.max_gross_exposure):
                return Decision(
                    False,
                    "gross_exposure_limit",
                    f"the desk's gross exposure would be {gross:.2f} USD, above {self.settings.max_gross_exposure}",
                )
            if -exposure.daily_pnl >= Decimal(self.settings.max_daily_loss):
                return Decision(
                    False,
                    "daily_loss_limit",
                    f"the desk lost {-exposure.daily_pnl:.2f} USD today (limit {self.settings.max_daily_loss}): "
                    "only trades that reduce its positions",
                )
        return ALLOWED
