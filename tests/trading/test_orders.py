"""The clients' order book on the desk, against a custodian played in memory and the replay venue, on
SQLite and PostgreSQL: matches between clients settled through the desk (both trades, the desk flat),
holds that follow what rests, price-time priority kept across a restart, IOC and market remainders
cancelled or routed to the desk at the venue's price, FOK and post-only refused whole, cancels and
amends, self-trade prevention, refusals that record nothing, and two writers at once."""

from __future__ import annotations

import threading
from decimal import Decimal

import pytest

from andchain.custody.port import DESK
from andchain.custody.service import position_account
from andchain.custody.states import CustodyState
from andchain.errors import Conflict, DomainError
from andchain.ops.core import OpStatus
from andchain.trading.desk import DESK_CASH
from andchain.trading.orders import OrderBooks
from andchain.trading.risk import RiskDenied, TradingState
from tests.conftest import FakeClock
from tests.custody.test_bank_reports import Played
from tests.trading.test_rfq import BTC, Desk


@pytest.fixture
def world(engine, tmp_path):
    desk = Desk(engine, tmp_path, FakeClock(), Played(), risk={"price_band_bps": "2000"})
    desk.fund_at_custodian(DESK, 5 * BTC)
    yield desk
    desk.ctx.close()


def mid(world: Desk) -> Decimal:
    return world.venue.fetch_order_book("BTC-USD").mid.quantize(Decimal("1"))


def available(world: Desk, client: str) -> int:
    return world.ctx.ledger.account(position_account("played", client, "BTC")).available


def settle(world: Desk, placed) -> list:
    return [world.drive(t["trade"]) for t in placed.trades]


def test_a_match_between_two_clients_settles_through_the_desk_and_leaves_it_flat(world):
    seller = world.client("Sam")
    world.fund_at_custodian(seller, 2 * BTC)
    buyer = world.client("Bel", 1_000_000_00)
    price = mid(world)
    rest = world.orders.place(seller, "BTC-USD", "sell", "1", price=str(price), client_order_id="s-1")
    assert (rest.order.status, rest.trades) == ("open", [])
    assert available(world, seller) == BTC  # 1 of 2 BTC held by the resting order
    taken = world.orders.place(buyer, "BTC-USD", "buy", "0.4", price=str(price + 100), client_order_id="b-1")
    assert taken.order.status == "filled"
    assert [(t["with"], t["price"], t["quantity"]) for t in taken.trades] == [("book", f"{price}.00", "0.4")]
    seller_order = world.orders.get(rest.order.id)
    assert (seller_order.status, seller_order.filled) == ("open", Decimal("0.4"))
    assert available(world, seller) == BTC  # 0.6 still held by the order, 0.4 by its trade
    assert world.dda(buyer)[1] == 1_000_000_00 - int(price * 40)  # the trade's hold at the match price
    ends = settle(world, taken)
    assert [op.status for op in ends] == [OpStatus.SUCCEEDED]
    sale = world.ops.find_by_key(ends[0].payload["after"])
    assert world.drive(sale.id).status == OpStatus.SUCCEEDED
    assert world.position(buyer) == 40_000_000
    assert world.position(seller) == 2 * BTC - 40_000_000
    assert world.position(DESK) == 5 * BTC  # the desk passed it on
    assert world.dda(buyer) == (1_000_000_00 - int(price * 40),) * 2
    assert world.dda(seller) == (int(price * 40),) * 2
    assert world.ctx.ledger.account(DESK_CASH).balance_posted == 0
    assert world.desk.positions().net()["BTC"] == 0
    assert world.venue.fetch_balance()["BTC"].total == Decimal("500")  # nothing hedged
    assert world.clean()


def test_price_then_time_priority_survives_a_restart(world):
    sellers = [world.client(f"S{i}") for i in range(3)]
    for s in sellers:
        world.fund_at_custodian(s, BTC)
    price = mid(world)
    world.orders.place(sellers[0], "BTC-USD", "sell", "0.5", price=str(price + 10))
    world.orders.place(sellers[1], "BTC-USD", "sell", "0.5", price=str(price))
    world.orders.place(sellers[2], "BTC-USD", "sell", "0.5", price=str(price))
    world.restart()  # the book in memory is gone: rebuilt from the stored orders, in their priority
    buyer = world.client("B", 10_000_000_00)
    taken = world.orders.place(buyer, "BTC-USD", "buy", "0.7", price=str(price + 10))
    sold = [world.ops.get(t["trade"]).payload for t in taken.trades]
    assert [t["price"] for t in taken.trades] == [f"{price}.00", f"{price}.00"]
    assert [t["quantity"] for t in taken.trades] == ["0.5", "0.2"]
    sellers_matched = [world.ops.find_by_key(p["after"]).payload["client"] for p in sold]
    assert sellers_matched == [sellers[1], sellers[2]]  # the same price: the older first
    assert world.orders.depth("BTC-USD")["asks"] == [[f"{price}.00", "0.3"], [f"{price + 10}.00", "0.5"]]


def test_ioc_and_market_remainders_are_cancelled_or_routed_to_the_desk(world):
    seller = world.client("Sol")
    world.fund_at_custodian(seller, BTC)
    buyer = world.client("Ben", 10_000_000_00)
    price = mid(world)
    world.orders.place(seller, "BTC-USD", "sell", "0.1", price=str(price - 1000))
    ioc = world.orders.place(buyer, "BTC-USD", "buy", "0.3", price=str(price - 1000), tif="ioc")
    assert (ioc.order.status, ioc.order.filled, ioc.order.reason) == ("cancelled", Decimal("0.1"), "not_filled_at_once")
    _, held = world.dda(buyer)
    assert held == 10_000_000_00 - int((price - 1000) * 10)  # only the filled part's trade holds
    # Routed: the rest trades with the desk at the venue's price plus the tier's spread, within the limit.
    routed = world.orders.place(buyer, "BTC-USD", "buy", "0.3", price=str(price + 1000), tif="ioc", route=True)
    assert routed.order.status == "filled"
    assert [t["with"] for t in routed.trades] == ["desk"]
    assert Decimal(routed.trades[0]["price"]) > price
    # Beyond the limit it is not routed.
    far = world.orders.place(buyer, "BTC-USD", "buy", "0.3", price=str(price - 500), tif="ioc", route=True)
    assert (far.order.status, far.order.reason) == ("cancelled", "venue_price_beyond_limit")
    market = world.orders.place(buyer, "BTC-USD", "buy", "0.2", route=True)
    assert market.order.status == "filled" and market.trades[0]["with"] == "desk"
    for placed in (ioc, routed, market):
        assert all(op.status == OpStatus.SUCCEEDED for op in settle(world, placed))
    assert world.position(buyer) == 60_000_000


def test_fok_and_post_only_are_refused_whole_and_hold_nothing(world):
    seller = world.client("Sue")
    world.fund_at_custodian(seller, BTC)
    buyer = world.client("Bob", 10_000_000_00)
    price = mid(world)
    world.orders.place(seller, "BTC-USD", "sell", "0.2", price=str(price))
    fok = world.orders.place(buyer, "BTC-USD", "buy", "0.3", price=str(price), tif="fok")
    assert (fok.order.status, fok.order.reason, fok.trades) == ("rejected", "cannot_fill_whole", [])
    post = world.orders.place(buyer, "BTC-USD", "buy", "0.1", price=str(price), post_only=True)
    assert (post.order.status, post.order.reason) == ("rejected", "would_take")
    assert world.dda(buyer) == (10_000_000_00, 10_000_000_00)
    whole = world.orders.place(buyer, "BTC-USD", "buy", "0.2", price=str(price), tif="fok")
    assert whole.order.status == "filled"


def test_cancel_and_amend_move_the_hold_with_the_order(world):
    buyer = world.client("Cal", 1_000_000_00)
    price = mid(world) - 2000
    placed = world.orders.place(buyer, "BTC-USD", "buy", "1", price=str(price))
    assert world.dda(buyer)[1] == 1_000_000_00 - int(price * 100)
    smaller = world.orders.amend(placed.order.id, quantity="0.5")
    assert (smaller.order.quantity, smaller.order.priority) == (Decimal("0.5"), placed.order.priority)
    assert world.dda(buyer)[1] == 1_000_000_00 - int(price * 50)
    moved = world.orders.amend(placed.order.id, price=str(price + 1))
    assert moved.order.priority > placed.order.priority  # a new price: the back of its level
    assert world.dda(buyer)[1] == 1_000_000_00 - int((price + 1) * 50)
    cancelled = world.orders.cancel(placed.order.id)
    assert cancelled.status == "cancelled"
    assert world.dda(buyer) == (1_000_000_00, 1_000_000_00)
    with pytest.raises(Conflict) as again:
        world.orders.cancel(placed.order.id)
    assert again.value.code == "order_not_open"
    assert world.orders.depth("BTC-USD")["bids"] == []


def test_a_party_frozen_on_a_lawful_order_loses_its_resting_orders_and_places_no_more(world):
    from andchain.compliance.enforcement import Enforcement
    from andchain.trading.orders import FrozenOrdersPart

    buyer = world.client("Frozen Buyer", 1_000_000_00)
    price = mid(world) - 2000
    placed = world.orders.place(buyer, "BTC-USD", "buy", "1", price=str(price))
    order = Enforcement(world.custody.tokens).freeze(buyer, reference="ORDER-1", authority="court", by="test")
    assert order.operation_id is None  # no address on any network: the ledger alone
    part = FrozenOrdersPart(world.orders)
    part.run()
    cancelled = world.orders.get(placed.order.id)
    assert (cancelled.status, cancelled.reason) == ("cancelled", "party frozen")
    assert world.dda(buyer) == (1_000_000_00, 1_000_000_00)  # the hold released, the money stays frozen
    with pytest.raises(DomainError) as caught:
        world.orders.place(buyer, "BTC-USD", "buy", "1", price=str(price))
    assert caught.value.code == "party_frozen"
    assert world.orders.depth("BTC-USD")["bids"] == []


def test_an_order_never_fills_against_its_owner(world):
    client = world.client("Dan", 10_000_000_00)
    world.fund_at_custodian(client, BTC)
    price = mid(world)
    resting = world.orders.place(client, "BTC-USD", "sell", "0.5", price=str(price))
    crossing = world.orders.place(client, "BTC-USD", "buy", "0.5", price=str(price), tif="ioc")
    assert crossing.trades == []
    old = world.orders.get(resting.order.id)
    assert (old.status, old.reason) == ("cancelled", "self_trade_prevented")
    assert available(world, client) == BTC


def test_refusals_record_nothing(world):
    poor = world.client("Eli", 100_00)
    price = mid(world)
    with pytest.raises(DomainError) as refused:
        world.orders.place(poor, "BTC-USD", "buy", "1", price=str(price))
    assert refused.value.code == "insufficient_funds"
    no_btc = world.client("Fin")
    with pytest.raises(DomainError) as refused:
        world.orders.place(no_btc, "BTC-USD", "sell", "1", price=str(price))
    assert refused.value.code == "insufficient_funds"
    for kwargs, code in [
        (dict(quantity="0.1", price="abc"), "invalid_request"),
        (dict(quantity="0.1", price=str(price), tif="day"), "invalid_request"),
        (dict(quantity="0.1", post_only=True), "invalid_request"),
        (dict(quantity="0.123456789", price=str(price)), "excess_precision"),
        (dict(quantity="0.1", price="1.001"), "excess_precision"),
        (dict(quantity="0.1", price=str(price * 2)), "price_out_of_band"),
    ]:
        with pytest.raises(DomainError) as refused:
            world.orders.place(poor, "BTC-USD", "buy", **kwargs)
        assert refused.value.code == code, kwargs
    assert world.orders.list() == []
    world.desk.states.set(TradingState.HALTED, reason="test", by="test")
    with pytest.raises(RiskDenied) as denied:
        world.orders.place(poor, "BTC-USD", "buy", "0.0001", price=str(price))
    assert denied.value.code == "trading_halted"
    world.desk.states.set(TradingState.REDUCING, reason="test", by="test")
    assert world.orders.place(poor, "BTC-USD", "buy", "0.0001", price=str(price)).order.status == "open"


def test_the_same_client_order_id_answers_the_same_order(world):
    buyer = world.client("Gil", 1_000_000_00)
    price = mid(world) - 1000
    first = world.orders.place(buyer, "BTC-USD", "buy", "0.1", price=str(price), client_order_id="mine-1")
    again = world.orders.place(buyer, "BTC-USD", "buy", "0.1", price=str(price), client_order_id="mine-1")
    assert (again.order.id, again.replayed) == (first.order.id, True)
    with pytest.raises(Conflict) as reused:
        world.orders.place(buyer, "BTC-USD", "buy", "0.2", price=str(price), client_order_id="mine-1")
    assert reused.value.code == "idempotency_key_reused"
    assert world.dda(buyer)[1] == 1_000_000_00 - int(price * 10)


def test_two_writers_at_once_keep_one_book(world):
    """Two services (as two processes would) place crossing orders at once on one instrument: every
    fill pairs a buy with a sell, nothing fills beyond its order, what rests never crosses."""
    other = OrderBooks(world.desk.__class__(world.ctx, custody=world.custody, venue=world.venue))
    price = mid(world)
    clients = []
    for i in range(4):
        c = world.client(f"W{i}", 10_000_000_00)
        world.fund_at_custodian(c, 2 * BTC)
        clients.append(c)
    errors: list[BaseException] = []

    def trade(books: OrderBooks, who: list[str], side: str) -> None:
        try:
            for n in range(6):
                books.place(who[n % 2], "BTC-USD", side, "0.1", price=str(price + (n % 3) - 1))
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [
        threading.Thread(target=trade, args=(world.orders, clients[:2], "buy")),
        threading.Thread(target=trade, args=(other, clients[2:], "sell")),
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    orders = world.orders.list(limit=1000)
    bought = sum(o.filled for o in orders if o.side == "buy")
    sold = sum(o.filled for o in orders if o.side == "sell")
    assert bought == sold
    assert all(o.filled <= o.quantity for o in orders)
    depth = world.orders.depth("BTC-USD")
    if depth["bids"] and depth["asks"]:
        assert Decimal(depth["bids"][0][0]) < Decimal(depth["asks"][0][0])
    trades = [op for op in world.ops.list(limit=1000) if op.kind == "desk_trade"]
    assert len(trades) == 2 * int(bought / Decimal("0.1"))


def test_a_remainder_below_the_minimum_is_cancelled_and_the_book_rebuilds(world):
    seller = world.client("Tiny")
    world.fund_at_custodian(seller, BTC)
    buyer = world.client("Tom", 1_000_000_00)
    price = mid(world)
    rest = world.orders.place(seller, "BTC-USD", "sell", "0.0002", price=str(price))
    world.orders.place(buyer, "BTC-USD", "buy", "0.000195", price=str(price))
    left = world.orders.get(rest.order.id)
    assert (left.status, left.reason, left.filled) == ("cancelled", "remainder_below_minimum", Decimal("0.000195"))
    assert available(world, seller) == BTC - 19_500  # only the trade holds; the dust is released
    world.restart()  # the book rebuilds from what rests
    assert world.orders.place(buyer, "BTC-USD", "buy", "0.0001", price=str(price - 100)).order.status == "open"


def test_a_matched_buy_is_delivered_by_its_sale_or_released_with_it(world):
    seller = world.client("Una")
    world.fund_at_custodian(seller, BTC)
    buyer = world.client("Vic", 1_000_000_00)
    price = mid(world)
    world.orders.place(seller, "BTC-USD", "sell", "0.1", price=str(price))
    taken = world.orders.place(buyer, "BTC-USD", "buy", "0.1", price=str(price))
    purchase = world.ops.get(taken.trades[0]["trade"])
    with pytest.raises(Conflict) as refused:  # its other half is the seller's: never cancelled alone
        world.worker.cancel(purchase.id)
    assert refused.value.code == "operation_in_flight"
    # The custodian rejects the seller's transfer to the buyer: neither trade settles, nothing is paid.
    for _ in range(10):
        world.worker.run_once()
        sent = [t for t in world.played.by_id.values() if not t.incoming and t.state is CustodyState.CREATED]
        if sent:
            world.played.end(sent[0].id, CustodyState.REJECTED)
            break
        world.clock.advance(1)
    assert world.drive(purchase.id, complete=False).error_code == "counterparty_failed"
    sale = world.ops.find_by_key(purchase.payload["after"])
    assert world.drive(sale.id, complete=False).error_code == "asset_leg_failed"
    assert world.dda(buyer) == (1_000_000_00, 1_000_000_00)
    assert world.dda(seller) == (0, 0)
    for order in world.orders.list():  # both orders say what happened: nothing filled
        assert (order.status, order.filled) == ("cancelled", 0)
        assert order.reason.startswith("trade_failed:")
    assert world.position(seller) == BTC and available(world, seller) == BTC
    assert world.desk.positions().net()["BTC"] == 0
    assert world.clean()


def test_cents_follow_the_cumulative_cost_so_an_exactly_funded_order_fills_in_parts(engine, tmp_path):
    world = Desk(engine, tmp_path, FakeClock(), Played(), risk={"price_band_bps": "5000"})
    buyer = world.client("Wes", 201)  # exactly ceil(50,000.01 x 0.00004) = 2.01 USD
    sellers = [world.client(f"X{i}") for i in range(2)]
    for s in sellers:
        world.fund_at_custodian(s, BTC)
    bid = world.orders.place(buyer, "BTC-USD", "buy", "0.00004", price="50000.01")
    assert world.dda(buyer)[1] == 0
    paid = []
    for s in sellers:
        taken = world.orders.place(s, "BTC-USD", "sell", "0.00002", price="50000.01")
        assert taken.order.status == "filled", taken.order.reason
        sale = world.ops.get(taken.trades[0]["trade"])
        paid.append(int(sale.payload["notional"]))
    purchases = [op for op in world.ops.list(limit=100) if op.kind == "desk_trade" and op.payload["side"] == "buy"]
    assert sorted(int(op.payload["notional"]) for op in purchases) == [100, 101]  # 2.01 in all, never more
    assert paid == [100, 100]  # each seller's cents rounded down from its own cost
    assert world.orders.get(bid.order.id).status == "filled"


def test_amendments_are_checked_like_new_orders(world):
    client = world.client("Yan", 10_000_000_00)
    price = mid(world) - 1000
    placed = world.orders.place(client, "BTC-USD", "buy", "0.1", price=str(price), post_only=True)
    world.restart()  # rebuilt from the database: still post-only
    seller = world.client("Yves")
    world.fund_at_custodian(seller, BTC)
    world.orders.place(seller, "BTC-USD", "sell", "0.1", price=str(price + 500))
    with pytest.raises(DomainError) as refused:
        world.orders.amend(placed.order.id, price=str(price + 500))  # post-only would take: refused
    assert refused.value.code == "amend_refused"
    world.desk.states.set(TradingState.HALTED, reason="test", by="test")
    with pytest.raises(RiskDenied) as denied:
        world.orders.amend(placed.order.id, quantity="0.2")
    assert denied.value.code == "trading_halted"
    world.desk.states.set(TradingState.ACTIVE, reason="test", by="test")
    with pytest.raises(RiskDenied) as denied:
        world.orders.amend(placed.order.id, quantity="5")  # ~300,000 USD: above standard's 250,000 an order
    assert denied.value.code == "order_notional_exceeded"


def test_resting_orders_count_in_the_days_room(world):
    client = world.client("Zoe", 100_000_000_00)
    price = mid(world) - 1000  # standard: 250,000 an order, 1,000,000 a day
    for _ in range(4):
        world.orders.place(client, "BTC-USD", "buy", "3.5", price=str(price))  # ~220,000 each, resting
    with pytest.raises(RiskDenied) as denied:
        world.orders.place(client, "BTC-USD", "buy", "3.5", price=str(price))
    assert denied.value.code == "daily_notional_exceeded"
    # Reducing a resting order frees room (its old remainder is not counted twice); growing one is checked.
    fifth = world.orders.place(client, "BTC-USD", "buy", "1.5", price=str(price)).order  # ~976,500 in all
    first = world.orders.list(client=client)[-1]
    assert world.orders.amend(first.id, quantity="3").order.quantity == Decimal("3")  # ~945,000
    with pytest.raises(RiskDenied) as denied:
        world.orders.amend(fifth.id, quantity="2.4")  # ~1,001,700
    assert denied.value.code == "daily_notional_exceeded"
    assert world.orders.get(fifth.id).quantity == Decimal("1.5")
    with pytest.raises(DomainError) as missing:
        world.orders.get("99999999999999999999")
    assert missing.value.code == "order_not_found"
