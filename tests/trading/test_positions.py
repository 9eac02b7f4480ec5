"""The desk's positions and P&L: average cost, realised on reducing, through zero, fees; and, for any
sequence of fills, realised + unrealised equal to the cash the fills made plus the position at the
mark, exactly (property test)."""

from __future__ import annotations

from decimal import Decimal
from fractions import Fraction

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from andchain.trading.positions import Fill, Position, Positions


def fill(side: str, quantity: str, price: str, fee: str = "0", asset: str = "BTC", place: str = "reference") -> Fill:
    return Fill(asset, place, side, Decimal(quantity), Decimal(price), Decimal(fee))


def test_average_cost_realised_and_unrealised():
    p = Position("BTC", "reference")
    p.apply(fill("buy", "1", "60000"))
    p.apply(fill("buy", "1", "62000"))
    assert p.quantity == 2 and p.average == 61000
    p.apply(fill("sell", "0.5", "64000", fee="3.20"))
    assert p.realised == Fraction(1500) - Fraction("3.20")  # (64,000 - 61,000) x 0.5, less the fee
    assert p.average == 61000 and p.quantity == Fraction(3, 2)
    assert p.unrealised(Decimal(63000)) == 3000
    view = p.view(Decimal(63000))
    assert view["average_cost"] == "61000.00" and view["realised_pnl"] == "1496.80"
    assert view["unrealised_pnl"] == "3000.00"


def test_through_zero_closes_one_side_and_opens_the_other():
    p = Position("ETH", "replay")
    p.apply(fill("buy", "2", "3000", asset="ETH"))
    p.apply(fill("sell", "5", "3100", asset="ETH"))
    assert p.realised == 200 and p.quantity == -3 and p.average == 3100
    p.apply(fill("buy", "3", "3000", asset="ETH"))  # covers the short at a profit
    assert p.realised == 500 and p.quantity == 0 and p.average == 0
    with pytest.raises(ValueError):
        p.apply(fill("buy", "0", "3000", asset="ETH"))


def test_net_positions_over_places_and_total_pnl():
    book = Positions()
    book.apply(
        [
            fill("buy", "1", "60000"),
            fill("sell", "0.25", "61000", place="replay"),
            fill("buy", "10", "3000", asset="ETH"),
        ]
    )
    assert book.net() == {"BTC": Decimal("0.75000000"), "ETH": Decimal("10.00000000")}
    realised, unrealised = book.pnl({"BTC": Decimal(62000), "ETH": Decimal(2900)})
    # BTC at the custodian: +2,000; short 0.25 at the venue: -250; ETH: -1,000.
    assert (realised, unrealised) == (Decimal("0.00"), Decimal("750.00"))


prices = st.decimals(min_value=Decimal("0.01"), max_value=Decimal("100000"), places=2)
quantities = st.decimals(min_value=Decimal("0.00000001"), max_value=Decimal("50"), places=8)
fees = st.decimals(min_value=Decimal(0), max_value=Decimal("25"), places=2)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["buy", "sell"]), quantities, prices, fees), max_size=40), prices)
def test_realised_plus_unrealised_is_the_cash_and_the_position_at_the_mark(fills, mark):
    p = Position("BTC", "reference")
    for side, quantity, price, fee in fills:
        p.apply(Fill("BTC", "reference", side, quantity, price, fee))
    assert p.realised + p.unrealised(mark) == p.cash + p.quantity * Fraction(mark)
    assert p.quantity == sum((Fraction(q) if s == "buy" else -Fraction(q) for s, q, _, _ in fills), Fraction(0))
    if p.quantity == 0:
        assert p.average == 0 and p.realised == p.cash
