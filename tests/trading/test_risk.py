"""Pre-trade risk: each denial with its reason code, the desk's states (a halted desk refuses new
risk, a reducing desk allows only reducing trades), kept in the database on SQLite and PostgreSQL."""

from __future__ import annotations

from decimal import Decimal

import pytest
from typer.testing import CliRunner

from andchain.config import RiskSettings, TradingSettings
from andchain.trading.instruments import Instruments
from andchain.trading.risk import (
    Exposure,
    RateLimiter,
    RiskDenied,
    RiskEngine,
    RiskOrder,
    States,
    TradingState,
)

INSTRUMENTS = Instruments(TradingSettings())
BTC, SOL = INSTRUMENTS.get("BTC-USD"), INSTRUMENTS.get("SOL-USD")
MARKS = {"BTC": Decimal(64000), "ETH": Decimal(3200), "SOL": Decimal(150)}


def order(side: str = "buy", size: str = "1", price: str = "64000", tier: str | None = None, instrument=BTC):
    return RiskOrder("c1", tier, instrument, side, Decimal(size), Decimal(price))


@pytest.fixture
def engine_states(engine, clock):
    states = States(engine, clock)
    return RiskEngine(RiskSettings(), states, limiter=RateLimiter(1000, 1.0)), states


def code(engine: RiskEngine, o: RiskOrder, exposure: Exposure | None = None) -> str | None:
    return engine.check(o, exposure or Exposure(marks=MARKS, reference_mid=Decimal(64000))).code


def test_each_client_limit_is_a_denial_with_its_code(engine_states):
    engine, _ = engine_states
    assert code(engine, order()) is None
    assert code(engine, order(tier="basic", instrument=SOL, price="150")) == "instrument_not_allowed"
    assert code(engine, order(tier="nobody")) == "instrument_not_allowed"
    assert code(engine, order(size="4")) == "order_notional_exceeded"  # 256,000 > 250,000
    spent = Exposure(marks=MARKS, client_daily_notional=Decimal(950_000), reference_mid=Decimal(64000))
    assert code(engine, order(), spent) == "daily_notional_exceeded"
    assert code(engine, order(price="70000")) == "price_out_of_band"  # more than 5% from the mid
    with pytest.raises(RiskDenied) as denied:
        engine.check(order(size="4"), Exposure(marks=MARKS)).raise_if_denied()
    assert denied.value.code == "order_notional_exceeded" and "250000" in denied.value.message


def test_the_desks_appetite(engine_states):
    engine, _ = engine_states
    short = Exposure(positions={"BTC": Decimal("-49.5")}, marks=MARKS, reference_mid=Decimal(64000))
    assert code(engine, order(size="1"), short) == "position_limit"  # the desk would be 50.5 short
    assert code(engine, order(side="sell", size="1"), short) is None  # reduces it
    heavy = Exposure(positions={"ETH": Decimal(3120)}, marks=MARKS, reference_mid=Decimal(64000))
    assert code(engine, order(size="1"), heavy) == "gross_exposure_limit"
    losing = Exposure(positions={"BTC": Decimal(2)}, marks=MARKS, daily_pnl=Decimal(-250_000))
    assert code(engine, order(side="sell"), losing) == "daily_loss_limit"  # makes the desk longer
    assert code(engine, order(side="buy"), losing) is None  # reduces its long


def test_a_halted_desk_refuses_new_risk_and_a_reducing_one_allows_only_reducing_trades(engine_states):
    engine, states = engine_states
    long = Exposure(positions={"BTC": Decimal(3)}, marks=MARKS)
    states.set(TradingState.REDUCING, reason="market stress", by="test")
    assert code(engine, order(side="sell"), long) == "reducing_only"  # the desk would buy: longer
    assert code(engine, order(side="buy"), long) is None  # the desk sells: shorter
    states.set(TradingState.ACTIVE, reason="calm again", by="test")
    states.set(TradingState.HALTED, scope="BTC-USD", reason="venue outage", by="test")
    denied = engine.check(order(), long)
    assert denied.code == "trading_halted" and "venue outage" in denied.reason
    assert code(engine, order(instrument=SOL, price="150"), Exposure(marks=MARKS)) is None  # only BTC halted
    with pytest.raises(Exception, match="says why"):
        states.set(TradingState.HALTED, reason=" ", by="test")


def test_the_submit_rate_per_client():
    ticks = iter([0.0, 0.1, 0.2, 0.3, 1.25])
    limiter = RateLimiter(3, 1.0, clock=lambda: next(ticks))
    assert [limiter.allow("c1") for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("c1")  # a second later: the first ones left the window


def test_desk_commands(tmp_path, monkeypatch):
    from andchain.cli import app

    monkeypatch.setenv("ANDCHAIN_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("ANDCHAIN_DATABASE_URL", raising=False)
    runner = CliRunner()
    assert runner.invoke(app, ["desk", "halt", "--reason", "venue outage", "-i", "btc-usd"]).exit_code == 0
    assert runner.invoke(app, ["desk", "reduce", "--reason", "stress"]).exit_code == 0
    status = runner.invoke(app, ["desk", "status", "--json"])
    assert status.exit_code == 0, status.output
    rows = {r["scope"]: r["state"] for r in __import__("json").loads(status.stdout)}
    assert rows["desk"] == "reducing" and rows["BTC-USD"] == "halted" and rows["ETH-USD"] == "reducing"
    assert runner.invoke(app, ["desk", "resume"]).exit_code == 0
    bad = runner.invoke(app, ["desk", "halt", "--reason", "x", "-i", "DOGE-USD"])
    assert bad.exit_code == 1 and "no instrument" in bad.output
