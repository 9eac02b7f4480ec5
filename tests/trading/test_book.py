"""The client order book: price-time priority, time in force, post-only, self-trade prevention,
amends; and, for any sequence of orders, cancels and amends, a book that is never crossed,
quantities conserved and priority kept (property tests)."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from andchain.config import TradingSettings
from andchain.errors import DomainError, NotFound
from andchain.trading.book import Book, BookError, Side, Status, TimeInForce
from andchain.trading.instruments import Instruments

BUY, SELL = Side.BUY, Side.SELL


def test_the_best_price_fills_first_then_the_oldest_at_that_price():
    book = Book()
    book.submit(1, "a", SELL, 5, 101)
    book.submit(2, "b", SELL, 5, 100)
    book.submit(3, "c", SELL, 5, 100)
    taken = book.submit(4, "d", BUY, 12, 101)
    assert [(f.maker, f.price, f.quantity) for f in taken.fills] == [(2, 100, 5), (3, 100, 5), (1, 101, 2)]
    assert taken.status == Status.FILLED and book.depth(SELL) == [(101, 3)]
    assert book.best_bid() is None and book.best_ask() == 101


def test_a_limit_rests_what_it_cannot_fill_and_never_trades_through_its_price():
    book = Book()
    book.submit(1, "a", SELL, 5, 105)
    rested = book.submit(2, "b", BUY, 5, 104)
    assert (rested.status, rested.fills, rested.remaining) == (Status.RESTING, [], 5)
    assert (book.best_bid(), book.best_ask()) == (104, 105)


def test_ioc_fok_market_and_post_only():
    book = Book()
    book.submit(1, "a", SELL, 5, 100)
    book.submit(2, "a", SELL, 5, 102)
    ioc = book.submit(3, "b", BUY, 8, 101, TimeInForce.IOC)
    assert (ioc.status, ioc.filled, ioc.remaining) == (Status.CANCELLED, 5, 3)
    assert 3 not in book.orders
    fok = book.submit(4, "b", BUY, 6, 102, TimeInForce.FOK)
    assert (fok.status, fok.reason, fok.fills) == (Status.REJECTED, "cannot_fill_whole", [])
    assert book.depth(SELL) == [(102, 5)]  # nothing matched
    assert book.submit(5, "b", BUY, 5, 102, TimeInForce.FOK).status == Status.FILLED
    book.submit(6, "a", SELL, 4, 110)
    market = book.submit(7, "b", BUY, 10)
    assert (market.status, market.filled, market.remaining) == (Status.CANCELLED, 4, 6)  # the rest: to route
    book.submit(8, "a", SELL, 4, 110)
    taking = book.submit(9, "b", BUY, 1, 110, post_only=True)
    assert (taking.status, taking.reason) == (Status.REJECTED, "would_take")
    making = book.submit(10, "b", BUY, 1, 109, post_only=True)
    assert making.status == Status.RESTING


def test_an_owner_never_trades_with_itself():
    book = Book()
    book.submit(1, "a", SELL, 5, 100)
    book.submit(2, "b", SELL, 5, 100)
    result = book.submit(3, "a", BUY, 5, 100)
    assert result.cancelled == [1]  # its own resting order went; the other owner's filled it
    assert [(f.maker, f.quantity) for f in result.fills] == [(2, 5)]
    assert len(book) == 0
    # FOK counts only what others offer.
    book.submit(4, "a", SELL, 5, 100)
    assert book.submit(5, "a", BUY, 5, 100, TimeInForce.FOK).status == Status.REJECTED


def test_amends_keep_or_lose_their_place():
    book = Book()
    book.submit(1, "a", SELL, 5, 100)
    book.submit(2, "b", SELL, 5, 100)
    assert book.amend(1, quantity=3).status == Status.RESTING  # smaller: keeps its place
    first = book.submit(3, "c", BUY, 1, 100)
    assert first.fills[0].maker == 1
    book.amend(1, quantity=10)  # larger: to the back
    second = book.submit(4, "c", BUY, 1, 100)
    assert second.fills[0].maker == 2
    assert book.amend(1, quantity=1).reason == "quantity_not_above_filled"  # 1 filled already
    moved = book.amend(2, price=99)
    assert moved.status == Status.RESTING and book.best_ask() == 99
    crossing = book.amend(2, price=100)
    assert crossing.status == Status.RESTING
    assert book.amend(42, quantity=1).reason == "not_resting"
    assert book.cancel(2) is not None and book.cancel(2) is None


def test_bad_input_is_refused_and_changes_nothing():
    book = Book()
    book.submit(1, "a", SELL, 5, 100)
    for bad in (lambda: book.submit(1, "a", SELL, 5, 100), lambda: book.submit(2, "a", BUY, 0, 100),
                lambda: book.submit(3, "a", BUY, 1, -1), lambda: book.submit(4, "a", BUY, 1.5, 100)):  # fmt: skip
        with pytest.raises(BookError):
            bad()
    assert book.depth(SELL) == [(100, 5)] and len(book) == 1


def test_instruments_are_exact_at_the_edges():
    instruments = Instruments(TradingSettings())
    btc = instruments.get("btc-usd")
    assert btc.ticks("64000.01") == 6_400_001 and btc.price(6_400_001) == Decimal("64000.01")
    assert btc.lots("0.5") == 50_000_000 and btc.size(50_000_000) == Decimal("0.5")
    assert btc.notional(btc.ticks("64000.00"), btc.lots("0.5")) == Decimal("32000")
    with pytest.raises(DomainError, match="whole number"):
        btc.ticks("64000.001")
    with pytest.raises(DomainError, match="between"):
        btc.lots("1000")
    with pytest.raises(DomainError, match="decimal string"):
        btc.lots(0.5)
    with pytest.raises(DomainError, match="worth between"):
        btc.check_notional(btc.ticks("1"), btc.lots("0.00001"))
    with pytest.raises(NotFound):
        instruments.get("DOGE-USD")


# ------------------------------------------------------------------ properties

ops = st.lists(
    st.one_of(
        st.tuples(
            st.just("submit"),
            st.sampled_from(["a", "b", "c"]),
            st.sampled_from([BUY, SELL]),
            st.integers(min_value=1, max_value=20),
            st.one_of(st.none(), st.integers(min_value=95, max_value=105)),
            st.sampled_from(list(TimeInForce)),
            st.booleans(),
        ),
        st.tuples(st.just("cancel"), st.integers(min_value=1, max_value=60)),
        st.tuples(
            st.just("amend"),
            st.integers(min_value=1, max_value=60),
            st.integers(min_value=1, max_value=30),
            st.one_of(st.none(), st.integers(min_value=95, max_value=105)),
        ),
    ),
    max_size=60,
)


@settings(max_examples=300, deadline=None)
@given(ops)
def test_never_crossed_quantities_conserved_priority_kept(sequence):
    book = Book()
    submitted: dict[int, int] = {}  # order -> quantity asked (the last amend's total)
    filled: dict[int, int] = {}
    gone: set[int] = set()  # cancelled or ended without resting
    next_id = 1
    for op in sequence:
        if op[0] == "submit":
            _, owner, side, quantity, price, tif, post_only = op
            result = book.submit(next_id, owner, side, quantity, price, tif, post_only)
            submitted[next_id] = quantity
            fills = result.fills
            # Priority: never a worse price before a better one; at one price, the older maker first.
            prices = [f.price for f in fills]
            assert prices == sorted(prices, reverse=(side == SELL))
            if price is not None:
                assert all((p <= price) if side == BUY else (p >= price) for p in prices)
            gone.update(result.cancelled)
            if result.status in (Status.CANCELLED, Status.REJECTED):
                gone.add(next_id)
            for fill in fills:
                filled[fill.maker] = filled.get(fill.maker, 0) + fill.quantity
                filled[fill.taker] = filled.get(fill.taker, 0) + fill.quantity
            next_id += 1
        elif op[0] == "cancel":
            if book.cancel(op[1]) is not None:
                gone.add(op[1])
        else:
            _, order_id, quantity, price = op
            before = book.orders.get(order_id)
            result = book.amend(order_id, quantity, price)
            if before is not None and result.status != Status.REJECTED:
                submitted[order_id] = quantity
                for fill in result.fills:
                    filled[fill.maker] = filled.get(fill.maker, 0) + fill.quantity
                    filled[fill.taker] = filled.get(fill.taker, 0) + fill.quantity
                gone.update(result.cancelled)
                if result.status in (Status.CANCELLED, Status.REJECTED):
                    gone.add(order_id)
        bid, ask = book.best_bid(), book.best_ask()
        assert bid is None or ask is None or bid < ask, "the book is crossed"
        # Conserved: what rests is what was asked less what filled; nothing rests twice.
        for order in book.orders.values():
            assert order.remaining == submitted[order.id] - filled.get(order.id, 0) > 0
            assert order.id not in gone
        for order_id, quantity in submitted.items():
            assert filled.get(order_id, 0) <= quantity
        levels = [book.depth(side, 0) for side in (BUY, SELL)]
        assert sum(q for side in levels for _, q in side) == sum(o.remaining for o in book.orders.values())


def test_the_book_bench_replays_one_seeded_workload():
    from andchain.bench import book as bench

    assert bench.workload(5_000, seed=3) == bench.workload(5_000, seed=3)
    result = bench.run(count=5_000, rounds=1, seed=3)
    assert result["orders"] == 5_000 and result["fills"] > 0
    assert result["orders_per_s"] > 0 and result["raw_limit_per_s"] > 0
