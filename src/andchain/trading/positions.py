"""The desk's positions and P&L: inventory per asset and place (a custodian, a venue), average cost,
realised and unrealised P&L marked to the venue's mid.

Each fill is the desk buying or selling `quantity` of an asset at `price` (USD per unit), paying
`fee` (USD). A fill that adds to the position moves its average cost; one that reduces it
realises (price - average) x quantity for a long, (average - price) x quantity for a short; one
that goes through zero closes the old side and opens the new at the fill's price. Fees are
realised losses. Arithmetic is exact: the average cost is kept as a fraction, so that for any
sequence of fills

    realised + unrealised(mark) == cash received - cash paid - fees + position x mark

holds to the cent and beyond (a property test checks it); figures leave as Decimals.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from fractions import Fraction


def _fraction(value: Decimal | int | str) -> Fraction:
    return Fraction(Decimal(value))


def _decimal(value: Fraction, places: int = 8) -> Decimal:
    """A fraction as a Decimal with `places` decimals (rounded half even: for display only)."""
    quantum = Decimal(1).scaleb(-places)
    return (Decimal(value.numerator) / Decimal(value.denominator)).quantize(quantum)


@dataclass(frozen=True, slots=True)
class Fill:
    asset: str
    place: str  # where the inventory sits: a custodian's name, a venue's
    side: str  # the desk's side: buy | sell
    quantity: Decimal
    price: Decimal  # USD per unit
    fee: Decimal = Decimal(0)  # USD (negative: a rebate)


@dataclass
class Position:
    asset: str
    place: str
    quantity: Fraction = Fraction(0)
    average: Fraction = Fraction(0)  # USD per unit, of what is held (0 when flat)
    realised: Fraction = Fraction(0)
    cash: Fraction = Fraction(0)  # received - paid - fees: what the fills did to the desk's USD

    def apply(self, fill: Fill) -> None:
        qty, price, fee = _fraction(fill.quantity), _fraction(fill.price), _fraction(fill.fee)
        if qty <= 0 or price <= 0:
            raise ValueError("a fill has a positive quantity and price")
        signed = qty if fill.side == "buy" else -qty
        self.cash += -signed * price - fee
        self.realised -= fee
        held = self.quantity
        if held == 0 or (held > 0) == (signed > 0):
            total = held + signed
            self.average = (abs(held) * self.average + qty * price) / abs(total)
            self.quantity = total
            return
        closing = min(qty, abs(held))
        self.realised += (price - self.average) * closing * (1 if held > 0 else -1)
        self.quantity = held + signed
        if self.quantity == 0:
            self.average = Fraction(0)
        elif (self.quantity > 0) != (held > 0):
            self.average = price  # through zero: the rest opens the other side at this price

    def unrealised(self, mark: Decimal) -> Fraction:
        return (_fraction(mark) - self.average) * self.quantity

    def view(self, mark: Decimal | None = None) -> dict[str, str | None]:
        return {
            "asset": self.asset,
            "place": self.place,
            "quantity": str(_decimal(self.quantity)),
            "average_cost": str(_decimal(self.average, 2)) if self.quantity else None,
            "realised_pnl": str(_decimal(self.realised, 2)),
            "unrealised_pnl": None if mark is None else str(_decimal(self.unrealised(mark), 2)),
            "mark": None if mark is None else str(mark),
        }


@dataclass
class Positions:
    """Every position of the desk, per (asset, place)."""

    positions: dict[tuple[str, str], Position] = field(default_factory=dict)

    def apply(self, fills: Iterable[Fill]) -> None:
        for fill in fills:
            key = (fill.asset, fill.place)
            if key not in self.positions:
                self.positions[key] = Position(fill.asset, fill.place)
            self.positions[key].apply(fill)

    def net(self) -> dict[str, Decimal]:
        """The desk's net position per asset, over every place (what risk checks)."""
        out: dict[str, Fraction] = {}
        for (asset, _), position in self.positions.items():
            out[asset] = out.get(asset, Fraction(0)) + position.quantity
        return {asset: _decimal(q) for asset, q in out.items()}

    def pnl(self, marks: Mapping[str, Decimal]) -> tuple[Decimal, Decimal]:
        """(realised, unrealised) over every position, marked to `marks` (an asset without a mark
        counts no unrealised P&L)."""
        realised = sum((p.realised for p in self.positions.values()), Fraction(0))
        unrealised = sum(
            (p.unrealised(marks[p.asset]) for p in self.positions.values() if p.asset in marks), Fraction(0)
        )
        return _decimal(realised, 2), _decimal(unrealised, 2)
