"""The desk's RFQ end to end against a custodian played in memory and the replay venue, on SQLite and
PostgreSQL: a quote priced from the book plus the tier's spread; an accept that holds the client's
cash once, decided once at the TTL boundary; a trade hedged or internalised, delivered by an internal
transfer at the custodian and settled both legs or neither; risk denials as errors and events; a
crash at every step boundary of a trade."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy import select

from andchain.config import Settings
from andchain.context import Context
from andchain.custody.port import DESK
from andchain.custody.reconcile import reconcile_custodians
from andchain.custody.service import CustodyHandler, CustodyService, position_account
from andchain.custody.states import CustodyState
from andchain.errors import Conflict, DomainError
from andchain.events.schema import events as events_table
from andchain.ledger.model import system_clock_us
from andchain.ops import failpoints
from andchain.ops.core import OpStatus
from andchain.ops.worker import Worker
from andchain.tokens.model import dda_account
from andchain.trading import schema
from andchain.trading.desk import DESK_CASH, DeskHandler, DeskService, QuoteClosed, cash_hold
from andchain.trading.instruments import Instruments
from andchain.trading.orders import OrderBooks
from andchain.trading.risk import RiskDenied, TradingState
from andchain.trading.venues.replay import ReplayVenue
from tests.conftest import FakeClock
from tests.custody.test_bank_reports import Played

BTC = 100_000_000


class Desk:
    """The bank's services over one database, with the played custodian and the replay venue."""

    def __init__(self, engine, tmp_path: Path, clock, played: Played, **trading: object) -> None:
        url = engine.url.render_as_string(hide_password=False)
        cfg = {
            "custodian": "played",
            "settlement_networks": {"BTC": "bitcoin"},
            "replay": {"seconds": 120, "levels": 10},
            "internalise_max": {"BTC": "0"},
            **trading,
        }
        self.settings = Settings(
            data_dir=tmp_path, database_url=url, keystore={"passphrase": "test", "scrypt_n": 1024}, trading=cfg
        )
        self.clock = clock
        self.engine = engine
        self.played = played
        self.tmp_path = tmp_path
        self.restart()

    def restart(self) -> None:
        """Every service built again from what is stored (after a crash)."""
        ctx = Context(self.settings, clock=self.clock)
        ctx.__dict__["engine"] = self.engine
        self.ctx = ctx
        self.venue = ReplayVenue(
            self.settings.trading.replay,
            Instruments(self.settings.trading),
            self.tmp_path / "replay",
            clock=lambda: self.clock() / 1_000_000,
        )
        self.custody = CustodyService(ctx, custodians={"played": self.played})
        self.desk = DeskService(ctx, custody=self.custody, venue=self.venue)
        self.orders = OrderBooks(self.desk)
        self.ops = self.custody.ops
        self.worker = Worker(self.ops, [CustodyHandler(self.custody), DeskHandler(self.desk)])

    def client(self, name: str, usd_cents: int = 0) -> str:
        client = self.custody.clients.onboard(name).id
        if usd_cents:
            self.custody.clients.deposit(client, usd_cents, reference=f"wire-{name}")
        self.custody.open_account("played", client)
        self.custody.ensure_positions("played", client, "BTC")
        return client

    def fund_at_custodian(self, owner: str, amount: int) -> None:
        account = self.custody.open_account("played", owner).account_id
        self.custody.ensure_positions("played", owner, "BTC")
        self.played.deposit(account, amount, CustodyState.COMPLETED)
        self.custody.poll("played")

    def drive(self, op_id: str, *, complete: bool = True, rounds: int = 40) -> object:
        """The worker, with the custodian completing what it was sent, until the trade ends."""
        for _ in range(rounds):
            self.worker.run_once()
            if complete:
                for transfer in list(self.played.by_id.values()):
                    if not transfer.incoming and transfer.state is CustodyState.CREATED:
                        self.played.complete(transfer.id)
            op = self.ops.get(op_id)
            if op.terminal or op.status == OpStatus.NEEDS_ATTENTION:
                return op
            self.clock.advance(1) if isinstance(self.clock, FakeClock) else time.sleep(0.05)
        return self.ops.get(op_id)

    def dda(self, client: str) -> tuple[int, int]:
        account = self.ctx.ledger.account(dda_account(client))
        return account.balance_posted, account.available

    def position(self, owner: str) -> int:
        return self.ctx.ledger.account(position_account("played", owner, "BTC")).balance_posted

    def clean(self) -> bool:
        _, findings = reconcile_custodians(self.custody)
        return all(f.ok for f in findings)


@pytest.fixture
def world(engine, tmp_path: Path) -> Iterator[Desk]:
    desk = Desk(engine, tmp_path, FakeClock(), Played())
    desk.fund_at_custodian(DESK, 5 * BTC)
    yield desk
    desk.ctx.close()


def test_a_buy_is_quoted_from_the_book_held_once_hedged_delivered_and_settled(world):
    client = world.client("Ada", 1_000_000_00)
    book = world.venue.fetch_order_book("BTC-USD")
    quote = world.desk.quote(client, "BTC-USD", "buy", quantity="0.5")
    # The book's price for 0.5 BTC plus the standard tier's 25 bp, rounded up to the cent.
    spent = Decimal(0)
    left = Decimal("0.5")
    for price, size in book.asks:
        take = min(size, left)
        spent, left = spent + take * price, left - take
        if not left:
            break
    assert quote.price >= (spent / Decimal("0.5")) * Decimal("1.0025")
    assert quote.price - (spent / Decimal("0.5")) * Decimal("1.0025") < Decimal("0.01")
    assert quote.notional_minor == int((quote.price * Decimal("0.5") * 100).to_integral_value("ROUND_CEILING"))
    assert world.dda(client) == (1_000_000_00, 1_000_000_00)  # a quote holds nothing

    trade = world.desk.accept(quote.id, client=client)
    assert world.desk.accept(quote.id, client=client).id == trade.id  # the same trade again
    assert world.dda(client) == (1_000_000_00, 1_000_000_00 - quote.notional_minor)  # held, not spent
    assert world.desk.get_quote(quote.id).status == "accepted"

    done = world.drive(trade.id)
    assert done.status == OpStatus.SUCCEEDED, (done.error_code, done.error_message)
    assert world.dda(client) == (1_000_000_00 - quote.notional_minor,) * 2
    assert world.ctx.ledger.account(DESK_CASH).balance_posted == quote.notional_minor
    assert world.position(client) == BTC // 2
    assert world.position(DESK) == 5 * BTC - BTC // 2
    assert world.desk.get_quote(quote.id).status == "settled"
    # Hedged on the venue once, under the trade's client order id; the desk is flat again.
    hedge = world.venue.create_order("BTC-USD", "market", "buy", Decimal("0.5"), None,
                                     {"clientOrderId": f"andchain-{trade.id}"})  # fmt: skip
    assert hedge.status == "closed" and hedge.filled == Decimal("0.5")
    positions = world.desk.positions()
    assert positions.net() == {"BTC": Decimal("0E-8")}
    realised, _ = positions.pnl({})
    assert realised < 0  # the venue's fee is paid; the spread is in the open positions' costs
    view = world.desk.positions_view()
    assert {row["place"] for row in view["positions"]} == {"custodian:played", "venue:replay"}
    assert world.clean()


def test_a_small_buy_is_internalised_within_the_appetite(engine, tmp_path):
    world = Desk(engine, tmp_path, FakeClock(), Played(), internalise_max={"BTC": "1"})
    world.fund_at_custodian(DESK, 5 * BTC)
    client = world.client("Bea", 1_000_000_00)
    quote = world.desk.quote(client, "BTC-USD", "buy", notional="10000.00")
    assert quote.notional_minor <= 10_000_00
    trade = world.desk.accept(quote.id)
    done = world.drive(trade.id)
    assert done.status == OpStatus.SUCCEEDED
    assert done.state["execution"]["hedge"] is False
    assert world.venue.fetch_balance()["BTC"].total == Decimal("500")  # no order at the venue
    assert world.desk.positions().net()["BTC"] == -quote.quantity
    world.ctx.close()


def test_a_sell_takes_the_asset_first_then_pays_the_dda(world):
    client = world.client("Cy")
    world.fund_at_custodian(client, 2 * BTC)
    quote = world.desk.quote(client, "BTC-USD", "sell", quantity="1.25")
    trade = world.desk.accept(quote.id)
    # The client's BTC is held at accept: the same BTC cannot be sold twice.
    again = world.desk.quote(client, "BTC-USD", "sell", quantity="1")
    with pytest.raises(DomainError) as refused:
        world.desk.accept(again.id)
    assert refused.value.code == "insufficient_funds"
    assert world.desk.get_quote(again.id).status == "open"  # nothing recorded
    done = world.drive(trade.id)
    assert done.status == OpStatus.SUCCEEDED, done.error_message
    assert world.dda(client) == (quote.notional_minor, quote.notional_minor)
    assert world.position(client) == 2 * BTC - 125_000_000
    assert world.position(DESK) == 5 * BTC + 125_000_000
    assert world.ctx.ledger.account(DESK_CASH).balance_posted == -quote.notional_minor
    assert world.clean()


def test_a_failed_asset_leg_releases_the_cash_and_fails_the_trade(world):
    client = world.client("Dee", 1_000_000_00)
    quote = world.desk.quote(client, "BTC-USD", "buy", quantity="0.1")
    trade = world.desk.accept(quote.id)
    # The custodian rejects the desk's internal transfer.
    for _ in range(10):
        world.worker.run_once()
        sent = [t for t in world.played.by_id.values() if not t.incoming and t.state is CustodyState.CREATED]
        if sent:
            world.played.end(sent[0].id, CustodyState.REJECTED)
            break
        world.clock.advance(1)
    done = world.drive(trade.id, complete=False)
    assert (done.status, done.error_code) == (OpStatus.FAILED, "asset_leg_failed")
    assert world.dda(client) == (1_000_000_00, 1_000_000_00)  # the hold released: nothing paid
    assert world.position(client) == 0
    assert world.desk.get_quote(quote.id).status == "failed"
    assert world.desk.positions().net()["BTC"] == Decimal("0.1")  # the hedge stays the desk's risk
    assert world.clean()


def test_a_desk_without_the_asset_cannot_deliver_and_compensates(engine, tmp_path):
    world = Desk(engine, tmp_path, FakeClock(), Played())
    world.custody.open_account("played", DESK)
    client = world.client("Eve", 1_000_000_00)
    trade = world.desk.accept(world.desk.quote(client, "BTC-USD", "buy", quantity="0.1").id)
    done = world.drive(trade.id)
    assert (done.status, done.error_code) == (OpStatus.FAILED, "asset_leg_refused")
    assert world.dda(client) == (1_000_000_00, 1_000_000_00)
    world.ctx.close()


def test_accepting_after_the_ttl_is_refused_and_the_quote_expires_once(world):
    client = world.client("Fay", 1_000_000_00)
    quote = world.desk.quote(client, "BTC-USD", "buy", quantity="0.01")
    world.clock.advance(5)  # exactly the TTL: no longer acceptable
    with pytest.raises(QuoteClosed):
        world.desk.accept(quote.id)
    assert world.desk.get_quote(quote.id).view(world.clock())["status"] == "expired"
    assert world.desk.expire_due() == 1
    assert world.desk.expire_due() == 0
    with pytest.raises(QuoteClosed):
        world.desk.accept(quote.id)
    assert world.dda(client) == (1_000_000_00, 1_000_000_00)
    assert world.ops.find_by_key(f"desk-quote-{quote.id}") is None


def test_accept_and_expiry_racing_at_the_boundary_decide_once(engine, tmp_path):
    """Real time, a short TTL, an accept and the expiry sweep started together near the boundary:
    each quote ends accepted with its trade and hold, or expired with neither; never both."""
    world = Desk(engine, tmp_path, system_clock_us, Played(), quote_ttl_s=0.05)
    world.fund_at_custodian(DESK, 5 * BTC)
    client = world.client("Gus", 10_000_000_00)
    outcomes = []
    for i in range(16):
        quote = world.desk.quote(client, "BTC-USD", "buy", quantity="0.001")
        time.sleep(max(0.0, (quote.expires_at_us - system_clock_us()) / 1e6 - (i % 8) * 0.004))
        barrier = threading.Barrier(2)
        errors: list[BaseException] = []

        def accept(quote_id: str = quote.id, barrier=barrier, errors=errors) -> None:
            barrier.wait()
            try:
                world.desk.accept(quote_id)
            except QuoteClosed as exc:
                errors.append(exc)

        def sweep(barrier=barrier) -> None:
            barrier.wait()
            world.desk.expire_due()

        threads = [threading.Thread(target=accept), threading.Thread(target=sweep)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        time.sleep(0.06)
        world.desk.expire_due()
        final = world.desk.get_quote(quote.id)
        trade = world.ops.find_by_key(f"desk-quote-{quote.id}")
        if final.status == "accepted":
            assert trade is not None and not errors
            assert world.ctx.ledger.lookup_transfers([cash_hold(trade.id).id])
        else:
            assert final.status == "expired" and trade is None and errors
        outcomes.append(final.status)
    _, available = world.dda(client)
    held = sum(q.notional_minor for q in world.desk.quotes(client=client) if q.status == "accepted")
    assert available == 10_000_000_00 - held
    world.ctx.close()


def test_risk_denials_reach_the_client_with_their_code_and_as_events(engine, tmp_path):
    world = Desk(
        engine, tmp_path, FakeClock(), Played(),
        risk={"max_net_position": {"BTC": "2"}, "submit_rate": 3, "submit_window_s": 60},
    )  # fmt: skip
    world.fund_at_custodian(DESK, 5 * BTC)
    client = world.client("Hal", 1_000_000_00)
    world.desk.set_tier(client, "basic", by="test")
    with pytest.raises(RiskDenied) as denied:
        world.desk.quote(client, "BTC-USD", "buy", quantity="1")  # ~64,000 USD: above basic's 10,000
    assert denied.value.code == "order_notional_exceeded"
    world.desk.set_tier(client, "professional", by="test")
    with pytest.raises(RiskDenied) as denied:
        world.desk.quote(client, "BTC-USD", "buy", quantity="3")  # the desk would be short 3
    assert denied.value.code == "position_limit"
    world.desk.states.set(TradingState.HALTED, reason="market closed for a test", by="test")
    with pytest.raises(RiskDenied) as denied:
        world.desk.quote(client, "BTC-USD", "buy", quantity="0.1")
    assert denied.value.code == "trading_halted"
    world.desk.states.set(TradingState.ACTIVE, reason="open", by="test")
    for _ in range(5):
        try:
            world.desk.quote(client, "BTC-USD", "buy", quantity="0.1")
        except RiskDenied as exc:
            assert exc.code == "rate_limited"
            break
    else:
        raise AssertionError("the submit rate was never limited")
    with world.engine.connect() as conn:
        found = conn.execute(select(events_table).where(events_table.c.type == "desk.risk_denied")).all()
    codes = [json.loads(r.payload)["code"] for r in found]
    assert codes == ["order_notional_exceeded", "position_limit", "trading_halted", "rate_limited"]
    assert all(r.client_id == client for r in found)
    world.ctx.close()


def test_a_halted_desk_refuses_an_accept_and_a_reducing_desk_takes_only_reducing_trades(world):
    buyer = world.client("Ida", 1_000_000_00)
    seller = world.client("Jon")
    world.fund_at_custodian(seller, BTC)
    quote = world.desk.quote(buyer, "BTC-USD", "buy", quantity="0.2")
    world.desk.states.set(TradingState.HALTED, reason="incident", by="test")
    with pytest.raises(RiskDenied) as denied:
        world.desk.accept(quote.id)
    assert denied.value.code == "trading_halted"
    assert world.dda(buyer) == (1_000_000_00, 1_000_000_00)
    world.desk.states.set(TradingState.ACTIVE, reason="back", by="test")
    # The desk short 0.2 after this buy (hedged: flat); internalised by a wider appetite: short.
    world.desk.settings.internalise_max["BTC"] = "1"
    trade = world.desk.accept(world.desk.quote(buyer, "BTC-USD", "buy", quantity="0.2").id)
    assert world.drive(trade.id).status == OpStatus.SUCCEEDED
    assert world.desk.positions().net()["BTC"] == Decimal("-0.2")
    world.desk.states.set(TradingState.REDUCING, reason="limits review", by="test")
    with pytest.raises(RiskDenied) as denied:
        world.desk.quote(buyer, "BTC-USD", "buy", quantity="0.1")  # the desk shorter still
    assert denied.value.code == "reducing_only"
    sell = world.desk.quote(seller, "BTC-USD", "sell", quantity="0.1")  # the desk buys back: allowed
    assert world.drive(world.desk.accept(sell.id).id).status == OpStatus.SUCCEEDED


def test_bad_requests_are_refused_and_record_nothing(world):
    client = world.client("Kim", 1_000_000_00)
    cases = [
        (dict(symbol="BTC-USD", side="hold", quantity="1"), "invalid_request"),
        (dict(symbol="BTC-USD", side="buy"), "invalid_request"),
        (dict(symbol="BTC-USD", side="buy", quantity="1", notional="10"), "invalid_request"),
        (dict(symbol="BTC-USD", side="buy", quantity=0.5), "invalid_request"),
        (dict(symbol="BTC-USD", side="buy", quantity="-1"), "invalid_request"),
        (dict(symbol="BTC-USD", side="buy", quantity="0.123456789"), "excess_precision"),
        (dict(symbol="BTC-USD", side="buy", notional="10.001"), "excess_precision"),
        (dict(symbol="DOGE-USD", side="buy", quantity="1"), "instrument_not_found"),
        (dict(symbol="ETH-USD", side="buy", quantity="1"), "instrument_not_settled"),
        (dict(symbol="BTC-USD", side="buy", quantity="99"), "insufficient_liquidity"),
        (dict(symbol="BTC-USD", side="sell", quantity="1", pay_with="deposit_token", network="internal"),
         "invalid_request"),
        (dict(symbol="BTC-USD", side="buy", quantity="1", pay_with="gold"), "invalid_request"),
        (dict(symbol="BTC-USD", side="buy", notional="1E+30"), "invalid_request"),
        (dict(symbol="BTC-USD", side="buy", notional="NaN"), "invalid_request"),
    ]  # fmt: skip
    for kwargs, code in cases:
        symbol, side = kwargs.pop("symbol"), kwargs.pop("side")
        with pytest.raises(DomainError) as refused:
            world.desk.quote(client, symbol, side, **kwargs)
        assert refused.value.code == code, (kwargs, refused.value.code, refused.value.message)
    assert world.desk.quotes(client=client) == []
    other = world.client("Lou", 1_000_000_00)
    quote = world.desk.quote(client, "BTC-USD", "buy", quantity="0.01")
    with pytest.raises(DomainError) as refused:
        world.desk.accept(quote.id, client=other)  # another client's quote does not exist for it
    assert refused.value.code == "quote_not_found"
    poor = world.client("Max", 100)
    quote = world.desk.quote(poor, "BTC-USD", "buy", quantity="0.01")
    with pytest.raises(DomainError) as refused:
        world.desk.accept(quote.id)
    assert refused.value.code == "insufficient_funds"
    assert world.desk.get_quote(quote.id).status == "open"  # still acceptable once funded, within its life


class Crash(BaseException):
    """The process dies here (raised past every handler, as a power cut would stop it)."""


@pytest.mark.parametrize(
    "point",
    [
        "desk_trade:execute:decided",
        "desk_trade:execute:after_hedge",
        "desk_trade:execute:recorded",
        "desk_trade:deliver:after_leg",
        "desk_trade:settled",
    ],
)
def test_a_crash_at_each_step_of_a_trade_ends_it_once(world, monkeypatch, point):
    client = world.client("Ned", 1_000_000_00)
    quote = world.desk.quote(client, "BTC-USD", "buy", quantity="0.3")
    trade = world.desk.accept(quote.id)
    hits = []

    def hit(name: str) -> None:
        if name == point and not hits:
            hits.append(name)
            raise Crash(name)

    monkeypatch.setattr(failpoints, "hit", hit)
    with pytest.raises(Crash):
        world.drive(trade.id)
    assert hits == [point]
    world.restart()  # a new process: nothing but what was stored
    world.ops.release_dead_leases()
    with world.engine.begin() as conn:  # its lease died with it
        from andchain.ops import schema as ops_schema

        conn.execute(ops_schema.operations.update().values(lease_owner=None, lease_until_us=None))
    done = world.drive(trade.id)
    assert done.status == OpStatus.SUCCEEDED, (done.error_code, done.error_message)
    assert world.dda(client) == (1_000_000_00 - quote.notional_minor,) * 2
    assert world.position(client) == 30_000_000
    sent = [t for t in world.played.by_id.values() if not t.incoming]
    assert len(sent) == 1  # one internal transfer at the custodian
    orders = world.venue._state["orders"]
    assert len(orders) == 1  # one hedge at the venue
    with world.engine.connect() as conn:
        refs = sorted(r.ref for r in conn.execute(select(schema.fills)))
    assert refs == [f"trade:{trade.id}:client", f"trade:{trade.id}:hedge"]
    assert world.desk.positions().net()["BTC"] == 0
    assert world.clean()


def test_an_operator_cancels_a_trade_only_before_anything_of_it_left(world):
    buyer = world.client("Oli", 1_000_000_00)
    seller = world.client("Pam")
    world.fund_at_custodian(seller, BTC)
    buy = world.desk.accept(world.desk.quote(buyer, "BTC-USD", "buy", quantity="0.2").id)
    sell = world.desk.accept(world.desk.quote(seller, "BTC-USD", "sell", quantity="0.2").id)
    assert world.desk.positions().net()["BTC"] == 0  # both in the desk's positions from acceptance
    seller_position = world.ctx.ledger.account(position_account("played", seller, "BTC"))
    assert (seller_position.balance_posted, seller_position.available) == (BTC, BTC - 20_000_000)
    # Neither has sent anything: both cancelled, what they held released, their fills reversed.
    for trade in (buy, sell):
        cancelled = world.worker.cancel(trade.id)
        assert cancelled.status == OpStatus.CANCELLED
        assert world.desk.get_quote(cancelled.payload["quote"]).status == "failed"
    assert world.dda(buyer) == (1_000_000_00, 1_000_000_00)
    assert world.ctx.ledger.account(position_account("played", seller, "BTC")).available == BTC
    assert world.desk.positions().net()["BTC"] == 0
    # Once its asset transfer is recorded, a sale is in flight: never cancelled from under it.
    sell = world.desk.accept(world.desk.quote(seller, "BTC-USD", "sell", quantity="0.2").id)
    world.worker.run_once()
    assert world.ops.find_by_key(f"desk-quote-{sell.payload['quote']}-asset") is not None
    with pytest.raises(Conflict) as refused:
        world.worker.cancel(sell.id)
    assert refused.value.code == "operation_in_flight"
    assert world.drive(sell.id).status == OpStatus.SUCCEEDED
    assert world.position(seller) == BTC - 20_000_000


def test_two_accepts_at_once_never_both_pass_the_daily_limit(engine, tmp_path):
    world = Desk(engine, tmp_path, FakeClock(), Played(), internalise_max={"BTC": "5"})
    world.fund_at_custodian(DESK, 5 * BTC)
    client = world.client("Quinn", 10_000_000_00)
    world.desk.set_tier(client, "standard", by="test")  # 250,000 an order, 1,000,000 a day
    quotes = [world.desk.quote(client, "BTC-USD", "buy", quantity="3.5") for _ in range(6)]  # ~224,000 each
    barrier = threading.Barrier(len(quotes))
    outcomes: list[str] = []

    def accept(quote_id: str) -> None:
        barrier.wait()
        try:
            world.desk.accept(quote_id)
            outcomes.append("accepted")
        except RiskDenied as exc:
            outcomes.append(exc.code)

    threads = [threading.Thread(target=accept, args=(q.id,)) for q in quotes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["accepted"] * 4 + ["daily_notional_exceeded"] * 2
    held = sum(q.notional_minor for q in world.desk.quotes(client=client) if q.status == "accepted")
    assert held <= 1_000_000_00
    assert world.dda(client)[1] == 10_000_000_00 - held
    world.ctx.close()


def test_positions_fold_a_fill_committed_late_with_a_smaller_id(world):
    row = {"source": "hedge", "trade_id": None, "client_id": None, "instrument": "BTC-USD", "asset": "BTC",
           "place": "venue:replay", "side": "buy", "price": "60000", "fee": "0", "notional_minor": 0,
           "at_us": 1}  # fmt: skip
    with world.engine.begin() as conn:
        conn.execute(schema.fills.insert().values(id=5, ref="a", quantity="1", **row))
        conn.execute(schema.fills.insert().values(id=10, ref="b", quantity="2", **row))
    assert world.desk.positions().net()["BTC"] == 3
    with world.engine.begin() as conn:
        conn.execute(schema.fills.insert().values(id=7, ref="c", quantity="4", **row))
    assert world.desk.positions().net()["BTC"] == 7
