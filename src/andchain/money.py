"""Exact money: assets with a fixed scale and amounts as integers of minor units.

No float ever represents money here. Parsing refuses anything that cannot be
represented exactly at the asset's scale instead of rounding it.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from decimal import Decimal

from andchain.errors import DomainError

# Amounts on chain are uint256, but the ledger books at most 2^128 - 1 minor units
# in one transfer; balances may grow to 10^40 - 1, the width of the stored column.
AMOUNT_MAX_MINOR = 2**128 - 1
BALANCE_MAX_MINOR = 10**40 - 1
SCALE_MAX = 36

# Digits are spelled [0-9], never \d: in Python \d matches every Unicode decimal digit
# (Arabic-Indic, full-width...) and int() then parses them, so "١٢" would be booked as 12.
# re.ASCII keeps \s to ASCII whitespace; fullmatch keeps "$" from accepting a final newline.
_CODE_RE = re.compile(r"[A-Z][A-Z0-9_.-]{0,15}", re.ASCII)
_AMOUNT_RE = re.compile(
    r"\s*(?P<number>[+-]?[0-9]+(?:\.[0-9]+)?)\s+(?P<code>[A-Za-z][A-Za-z0-9_.-]{0,15})\s*", re.ASCII
)
_NUMBER_RE = re.compile(r"[+-]?[0-9]+(?:\.[0-9]+)?", re.ASCII)
_ASCII_WHITESPACE = " \t\n\r\f\v"
# A uint256 has 78 decimal digits; no amount the platform books is longer. The bound
# also keeps int() far from Python's 4,300-digit conversion limit.
WHOLE_DIGITS_MAX = 78


class MoneyError(DomainError):
    """An amount or asset that cannot be represented exactly."""

    code = "invalid_amount"


@dataclass(frozen=True, slots=True)
class Asset:
    """An asset the ledger can book: a code and the number of decimal places of its minor unit."""

    code: str
    scale: int

    def __post_init__(self) -> None:
        if not _CODE_RE.fullmatch(self.code):
            raise MoneyError(f"asset code must be 1-16 upper-case letters/digits, was {self.code!r}")
        if not 0 <= self.scale <= SCALE_MAX:
            raise MoneyError(f"asset scale must be within 0..{SCALE_MAX}, was {self.scale}")

    def __str__(self) -> str:
        return f"{self.code}/{self.scale}"


DEFAULT_ASSETS: tuple[Asset, ...] = (
    Asset("USD", 2),
    Asset("EUR", 2),
    Asset("GBP", 2),
    Asset("BTC", 8),
    Asset("ETH", 18),
    Asset("USDC", 6),
    Asset("PTS", 0),
)


class AssetRegistry:
    """The assets known to this installation: the defaults plus those added by config."""

    def __init__(self, assets: Iterable[Asset] = DEFAULT_ASSETS) -> None:
        self._by_code: dict[str, Asset] = {}
        for asset in assets:
            self.add(asset)

    def add(self, asset: Asset) -> Asset:
        known = self._by_code.get(asset.code)
        if known is not None and known != asset:
            raise MoneyError(
                f"asset {asset.code} is already registered with scale {known.scale}, "
                f"cannot register it again with scale {asset.scale}"
            )
        self._by_code[asset.code] = asset
        return asset

    def get(self, code: str) -> Asset:
        try:
            return self._by_code[code.upper()]
        except KeyError:
            known = ", ".join(sorted(self._by_code))
            raise MoneyError(f"unknown asset {code!r}; known assets: {known}", code="unknown_asset") from None

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and code.upper() in self._by_code

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(sorted(self._by_code.values(), key=lambda a: a.code))

    @classmethod
    def with_extra(cls, extra: Mapping[str, int]) -> AssetRegistry:
        registry = cls()
        for code, scale in extra.items():
            registry.add(Asset(code.upper(), scale))
        return registry


@dataclass(frozen=True, slots=True, order=False)
class Amount:
    """An exact amount: an integer number of minor units of one asset."""

    asset: Asset
    minor: int

    def __post_init__(self) -> None:
        if isinstance(self.minor, bool) or not isinstance(self.minor, int):
            raise MoneyError(f"amount minor units must be an int, was {type(self.minor).__name__}")

    def __str__(self) -> str:
        return f"{format_minor(self.minor, self.asset.scale)} {self.asset.code}"

    def _same_asset(self, other: Amount) -> None:
        if other.asset != self.asset:
            raise MoneyError(f"cannot combine {self.asset.code} with {other.asset.code}", code="asset_mismatch")

    def __add__(self, other: Amount) -> Amount:
        self._same_asset(other)
        return Amount(self.asset, self.minor + other.minor)

    def __sub__(self, other: Amount) -> Amount:
        self._same_asset(other)
        return Amount(self.asset, self.minor - other.minor)

    def __neg__(self) -> Amount:
        return Amount(self.asset, -self.minor)

    def __lt__(self, other: Amount) -> bool:
        self._same_asset(other)
        return self.minor < other.minor

    def __le__(self, other: Amount) -> bool:
        self._same_asset(other)
        return self.minor <= other.minor

    def rescale(self, asset: Asset) -> Amount:
        """Convert to another scale exactly, or refuse: 1.50 USD -> 1500000 USDC/6 is exact, 1 wei -> USD/2 is not."""
        return Amount(asset, rescale_minor(self.minor, self.asset.scale, asset.scale))


def rescale_minor(minor: int, scale_from: int, scale_to: int) -> int:
    if scale_to >= scale_from:
        return int(minor * 10 ** (scale_to - scale_from))
    factor = 10 ** (scale_from - scale_to)
    quotient, remainder = divmod(minor, factor)
    if remainder:
        raise MoneyError(
            f"{format_minor(minor, scale_from)} has more than {scale_to} decimal places "
            f"and cannot be converted exactly",
            code="inexact_conversion",
        )
    return int(quotient)


def format_minor(minor: int, scale: int) -> str:
    """Render minor units as a plain decimal string with exactly `scale` decimals."""
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor))
    if scale == 0:
        return sign + digits
    digits = digits.rjust(scale + 1, "0")
    return f"{sign}{digits[:-scale]}.{digits[-scale:]}"


def parse_minor(value: str | int | Decimal, scale: int, *, allow_negative: bool = False) -> int:
    """Parse a decimal number into minor units at `scale`, refusing anything inexact.

    Accepted: a decimal string ("12.34"), an int (whole units) or a finite Decimal.
    Refused: floats (binary fractions are not money), NaN/infinity, exponents,
    more decimals than the scale, negatives unless allowed.
    """
    if isinstance(value, bool | float):
        raise MoneyError(f"amounts must be given as decimal strings, not {type(value).__name__} ({value!r})")
    if isinstance(value, int):
        # Whole units: exact without a detour through text (str() refuses ints over 4,300 digits).
        if abs(value) >= 10**WHOLE_DIGITS_MAX:
            raise MoneyError(f"amount must have at most {WHOLE_DIGITS_MAX} digits before the point")
        if value < 0 and not allow_negative:
            raise MoneyError(f"amount must not be negative, was {value!r}")
        return int(value * 10**scale)
    if isinstance(value, Decimal):
        if not value.is_finite():
            raise MoneyError(f"amount must be a finite number, was {value}")
        text = format(value, "f")
    elif isinstance(value, str):
        text = value.strip(_ASCII_WHITESPACE)
    else:
        raise MoneyError(f"amount must be a decimal string, was {type(value).__name__}")
    if not _NUMBER_RE.fullmatch(text):
        raise MoneyError(f"amount must be a plain decimal number like 12.34 (ASCII digits), was {value!r}")
    negative = text.startswith("-")
    text = text.lstrip("+-")
    whole, _, fraction = text.partition(".")
    whole = whole.lstrip("0") or "0"
    if len(whole) > WHOLE_DIGITS_MAX:
        raise MoneyError(
            f"amount must have at most {WHOLE_DIGITS_MAX} digits before the point, had {len(whole)}",
        )
    fraction_digits = fraction.rstrip("0")
    if len(fraction_digits) > scale:
        raise MoneyError(
            f"amount {value!r} has {len(fraction_digits)} decimal places; at most {scale} are allowed",
            code="excess_precision",
        )
    minor = int(whole) * 10**scale + (int(fraction_digits.ljust(scale, "0")) if scale else 0)
    if negative:
        minor = -minor
    if minor < 0 and not allow_negative:
        raise MoneyError(f"amount must not be negative, was {value!r}")
    return int(minor)


def parse_amount(text: str, registry: AssetRegistry, *, allow_negative: bool = False) -> Amount:
    """Parse "12.34 USD" into an exact Amount."""
    if not isinstance(text, str):
        raise MoneyError(f"amount must be a string like '12.34 USD', was {type(text).__name__}")
    match = _AMOUNT_RE.fullmatch(text)
    if not match:
        raise MoneyError(f"amount must look like '12.34 USD', was {text!r}")
    asset = registry.get(match["code"])
    return Amount(asset, parse_minor(match["number"], asset.scale, allow_negative=allow_negative))
