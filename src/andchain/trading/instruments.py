"""Instruments: what the desk trades, with the precision and limits of each (`trading.instruments`).

Prices and sizes enter and leave as exact decimals; inside, a price is a whole number of the
instrument's price increment (ticks) and a size a whole number of its size increment (lots),
so that the book and every sum over it are exact integers. A decimal that is not a whole number
of increments is refused, never rounded.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from andchain.config import InstrumentSettings, TradingSettings
from andchain.errors import DomainError, NotFound


class InstrumentError(DomainError):
    code = "invalid_order"


def _decimal(value: object, what: str) -> Decimal:
    if isinstance(value, bool | float):
        raise InstrumentError(f"{what} is a decimal string, was {value!r}")
    try:
        number = Decimal(str(value))
    except InvalidOperation:
        raise InstrumentError(f"{what} is not a number: {value!r}") from None
    if not number.is_finite():
        raise InstrumentError(f"{what} is not a finite number: {value!r}")
    return number


@dataclass(frozen=True)
class Instrument:
    symbol: str
    base: str
    quote: str
    price_increment: Decimal
    size_increment: Decimal
    min_size: Decimal
    max_size: Decimal
    min_notional: Decimal
    max_notional: Decimal

    @classmethod
    def of(cls, symbol: str, cfg: InstrumentSettings) -> Instrument:
        base, sep, quote = symbol.partition("-")
        if not sep or not base or not quote:
            raise DomainError(f"an instrument is named BASE-QUOTE, was {symbol!r}", code="invalid_config")
        made = cls(
            symbol,
            base,
            quote,
            Decimal(cfg.price_increment),
            Decimal(cfg.size_increment),
            Decimal(cfg.min_size),
            Decimal(cfg.max_size),
            Decimal(cfg.min_notional),
            Decimal(cfg.max_notional),
        )
        if made.price_increment <= 0 or made.size_increment <= 0 or not 0 < made.min_size <= made.max_size:
            raise DomainError(f"instrument {symbol}: increments and sizes must be positive", code="invalid_config")
        return made

    def _whole(self, value: object, increment: Decimal, what: str) -> int:
        number = _decimal(value, what)
        units = number / increment
        if units != units.to_integral_value():
            raise InstrumentError(
                f"{what} {number} of {self.symbol} is not a whole number of {increment}", code="excess_precision"
            )
        return int(units)

    def ticks(self, price: object) -> int:
        """A price as a whole number of ticks (positive)."""
        ticks = self._whole(price, self.price_increment, "price")
        if ticks <= 0:
            raise InstrumentError(f"a price of {self.symbol} is positive, was {price}")
        return ticks

    def lots(self, size: object) -> int:
        """A size as a whole number of lots, within the instrument's limits."""
        number = _decimal(size, "size")
        if not self.min_size <= number <= self.max_size:
            raise InstrumentError(
                f"a size of {self.symbol} is between {self.min_size} and {self.max_size}, was {number}",
                code="size_out_of_range",
            )
        return self._whole(number, self.size_increment, "size")

    def price(self, ticks: int) -> Decimal:
        return ticks * self.price_increment

    def size(self, lots: int) -> Decimal:
        return lots * self.size_increment

    def notional(self, ticks: int, lots: int) -> Decimal:
        """Price times size, exact (in the quote asset)."""
        return self.price(ticks) * self.size(lots)

    def check_notional(self, ticks: int, lots: int) -> Decimal:
        value = self.notional(ticks, lots)
        if not self.min_notional <= value <= self.max_notional:
            raise InstrumentError(
                f"an order of {self.symbol} is worth between {self.min_notional} and {self.max_notional} "
                f"{self.quote}, was {value}",
                code="notional_out_of_range",
            )
        return value


class Instruments:
    def __init__(self, settings: TradingSettings) -> None:
        self._all = {symbol: Instrument.of(symbol, cfg) for symbol, cfg in settings.instruments.items()}

    def get(self, symbol: str) -> Instrument:
        try:
            return self._all[symbol.upper()]
        except KeyError:
            raise NotFound(
                f"no instrument {symbol!r}; traded: {', '.join(sorted(self._all))}", code="instrument_not_found"
            ) from None

    def __iter__(self) -> Iterator[Instrument]:
        return iter(self._all.values())
