"""The replay venue: books generated from a seed (the same seed, the same books), served on a clock,
market orders walking the book with slippage and fees, limits resting until a later book crosses
them, balances that refuse what they cannot pay, and a clientOrderId that answers its order again,
also after a restart."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from andchain.config import ReplayVenueSettings, TradingSettings
from andchain.trading.instruments import Instruments
from andchain.trading.venues.port import InsufficientFunds, OrderNotFound, Venue, VenueRefused, sweep
from andchain.trading.venues.replay import ReplayVenue, generate


class Clock:
    def __init__(self) -> None:
        self.now = 1_800_000_000.0

    def __call__(self) -> float:
        return self.now


def venue(tmp_path: Path, clock: Clock, **settings: object) -> ReplayVenue:
    cfg = ReplayVenueSettings(seconds=120, levels=10, **settings)  # type: ignore[arg-type]
    return ReplayVenue(cfg, Instruments(TradingSettings()), tmp_path / "replay", clock=clock)


def test_the_same_seed_gives_the_same_books_with_realistic_spreads(tmp_path):
    instruments = Instruments(TradingSettings())
    btc = instruments.get("BTC-USD")
    first = generate(btc, 7, 60, 10)
    assert first == generate(btc, 7, 60, 10) and first != generate(btc, 8, 60, 10)
    for row in first:
        bids = [Decimal(p) for p, _ in row["bids"]]
        asks = [Decimal(p) for p, _ in row["asks"]]
        assert bids == sorted(bids, reverse=True) and asks == sorted(asks)
        spread_bp = (asks[0] - bids[0]) / ((asks[0] + bids[0]) / 2) * 10_000
        assert Decimal("0.5") <= spread_bp <= Decimal(3)  # about a basis point on BTC
        for price, size in row["bids"] + row["asks"]:
            btc.ticks(price)  # whole ticks
            assert Decimal(size) % btc.size_increment == 0 and Decimal(size) > 0
    mids = [(Decimal(r["bids"][0][0]) + Decimal(r["asks"][0][0])) / 2 for r in first]
    assert len(set(mids)) > 30 and max(mids) / min(mids) < Decimal("1.01")  # it moves, as BTC does in a minute


def test_a_market_order_walks_the_book_pays_slippage_and_fees(tmp_path):
    clock = Clock()
    replay = venue(tmp_path, clock)
    assert isinstance(replay, Venue)
    book = replay.fetch_order_book("BTC-USD")
    ticker = replay.fetch_ticker("BTC-USD")
    assert ticker.bid == book.bids[0][0] and ticker.ask == book.asks[0][0]
    amount = book.asks[0][1] + book.asks[1][1] / 2  # through the first level into the second
    filled, cost = sweep(book.asks, amount)
    order = replay.create_order("BTC-USD", "market", "buy", amount)
    assert order.status == "closed" and order.filled == amount == filled
    assert order.cost == cost * Decimal("1.0002")  # 2 bp beyond the book it walked
    assert order.average > book.asks[0][0]
    assert order.fee == order.cost * Decimal("0.001")
    balances = replay.fetch_balance()
    assert balances["BTC"].free == Decimal(500) + amount
    assert balances["USD"].free == Decimal(50_000_000) - order.cost - order.fee
    clock.now += 1
    assert replay.fetch_order_book("BTC-USD") != book  # the next second's book


def test_limits_rest_and_fill_when_a_later_book_crosses_them(tmp_path):
    clock = Clock()
    replay = venue(tmp_path, clock)
    best_bid = replay.fetch_ticker("ETH-USD").bid
    ioc = replay.create_order("ETH-USD", "limit", "sell", Decimal(5), best_bid * 2, {"timeInForce": "IOC"})
    assert (ioc.status, ioc.filled) == ("canceled", 0)
    resting = replay.create_order("ETH-USD", "limit", "sell", Decimal(1), best_bid + Decimal("0.01"))
    assert resting.status == "open"
    assert replay.fetch_balance()["ETH"].used == 1
    for _ in range(120):
        clock.now += 1
        seen = replay.fetch_order(resting.id)
        if seen.status == "closed":
            break
    assert seen.status == "closed" and seen.average == best_bid + Decimal("0.01")
    assert replay.fetch_balance()["ETH"].used == 0
    other = replay.create_order("ETH-USD", "limit", "buy", Decimal(1), Decimal(1))
    assert replay.cancel_order(other.id).status == "canceled"
    assert replay.fetch_balance()["USD"].used == 0
    with pytest.raises(OrderNotFound):
        replay.fetch_order("r999")


def test_what_it_cannot_pay_is_refused_and_a_client_order_id_answers_once(tmp_path):
    clock = Clock()
    replay = venue(tmp_path, clock, balances={"USD": "1000", "BTC": "0"})
    with pytest.raises(InsufficientFunds):
        replay.create_order("BTC-USD", "market", "buy", Decimal(1))
    with pytest.raises(InsufficientFunds):
        replay.create_order("BTC-USD", "market", "sell", Decimal("0.01"))
    with pytest.raises(VenueRefused):
        replay.create_order("BTC-USD", "stop", "buy", Decimal("0.01"))
    assert replay.fetch_balance()["USD"].free == 1000
    first = replay.create_order("BTC-USD", "market", "buy", Decimal("0.01"), params={"clientOrderId": "hedge-1"})
    again = replay.create_order("BTC-USD", "market", "buy", Decimal("0.01"), params={"clientOrderId": "hedge-1"})
    assert again.id == first.id
    restarted = venue(tmp_path, clock, balances={"USD": "1000", "BTC": "0"})
    after = restarted.create_order("BTC-USD", "market", "buy", Decimal("0.01"), params={"clientOrderId": "hedge-1"})
    assert after.id == first.id and restarted.fetch_balance()["BTC"].free == Decimal("0.01")
