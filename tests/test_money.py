from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from andchain.money import (
    Amount,
    Asset,
    AssetRegistry,
    MoneyError,
    format_minor,
    parse_amount,
    parse_minor,
)

REGISTRY = AssetRegistry()


def test_default_assets_have_their_scales():
    scales = {asset.code: asset.scale for asset in REGISTRY}
    assert scales == {"USD": 2, "EUR": 2, "GBP": 2, "BTC": 8, "ETH": 18, "USDC": 6, "PTS": 0}


def test_parse_amount_gives_exact_minor_units():
    assert parse_amount("12.34 USD", REGISTRY) == Amount(REGISTRY.get("USD"), 1234)
    assert parse_amount("0.00000001 BTC", REGISTRY).minor == 1
    assert parse_amount("1 ETH", REGISTRY).minor == 10**18
    assert parse_amount("12.30 usd", REGISTRY).minor == 1230


@pytest.mark.parametrize(
    ("text", "code"),
    [
        ("12.345 USD", "excess_precision"),
        ("0.1 PTS", "excess_precision"),
        ("-1 USD", "invalid_amount"),
        ("NaN USD", "invalid_amount"),
        ("inf USD", "invalid_amount"),
        ("1e3 USD", "invalid_amount"),
        ("12.34", "invalid_amount"),
        ("12.34 XYZ", "unknown_asset"),
        ("", "invalid_amount"),
    ],
)
def test_parse_amount_refuses_what_is_not_exact(text, code):
    with pytest.raises(MoneyError) as caught:
        parse_amount(text, REGISTRY)
    assert caught.value.code == code


def test_floats_are_refused_even_when_they_look_exact():
    with pytest.raises(MoneyError, match="not float"):
        parse_minor(0.5, 2)


def test_negative_amounts_only_when_allowed():
    assert parse_minor("-1.50", 2, allow_negative=True) == -150
    with pytest.raises(MoneyError, match="must not be negative"):
        parse_minor("-1.50", 2)


def test_decimal_input_is_exact_or_refused():
    assert parse_minor(Decimal("1.10"), 2) == 110
    with pytest.raises(MoneyError):
        parse_minor(Decimal("NaN"), 2)
    with pytest.raises(MoneyError):
        parse_minor(Decimal("1.001"), 2)


def test_amounts_of_different_assets_do_not_mix():
    usd, eur = REGISTRY.get("USD"), REGISTRY.get("EUR")
    with pytest.raises(MoneyError) as caught:
        Amount(usd, 1) + Amount(eur, 1)
    assert caught.value.code == "asset_mismatch"


def test_rescale_is_exact_or_refused():
    usd, usdc = REGISTRY.get("USD"), REGISTRY.get("USDC")
    assert Amount(usd, 150).rescale(usdc) == Amount(usdc, 1_500_000)
    assert Amount(usdc, 1_500_000).rescale(usd) == Amount(usd, 150)
    with pytest.raises(MoneyError) as caught:
        Amount(usdc, 1).rescale(usd)
    assert caught.value.code == "inexact_conversion"


def test_registry_takes_extra_assets_but_not_a_conflicting_scale():
    registry = AssetRegistry.with_extra({"jpmd": 2, "MMF": 6})
    assert registry.get("JPMD") == Asset("JPMD", 2)
    with pytest.raises(MoneyError, match="already registered"):
        registry.add(Asset("USD", 6))


def test_amounts_at_ten_to_the_thirty_format_and_parse_back():
    eth = REGISTRY.get("ETH")
    big = Amount(eth, 10**30)
    assert str(big) == "1000000000000.000000000000000000 ETH"
    assert parse_amount(str(big), REGISTRY) == big


@given(minor=st.integers(min_value=-(2**130), max_value=2**130), scale=st.integers(min_value=0, max_value=18))
def test_format_then_parse_is_identity(minor, scale):
    assert parse_minor(format_minor(minor, scale), scale, allow_negative=True) == minor


# Unicode has many digits that Python's int() accepts; money is written with ASCII digits only.
NON_ASCII_DIGITS = [
    "١٢",  # Arabic-Indic
    "۱۲",  # extended Arabic-Indic (Persian)
    "１２",  # full-width
    "१२",  # Devanagari
    "²",  # superscript: isdigit() is True but int() refuses it
    "1²",
    "12.٣",
    "12.３",
]


@pytest.mark.parametrize("text", NON_ASCII_DIGITS)
def test_parse_minor_refuses_digits_that_are_not_ascii(text):
    with pytest.raises(MoneyError) as caught:
        parse_minor(text, 2)
    assert caught.value.code == "invalid_amount"


@pytest.mark.parametrize("text", NON_ASCII_DIGITS)
def test_parse_amount_refuses_digits_that_are_not_ascii(text):
    with pytest.raises(MoneyError) as caught:
        parse_amount(f"{text} USD", REGISTRY)
    assert caught.value.code == "invalid_amount"


@pytest.mark.parametrize("text", ["\u200312.34", "12.34\u3000", "\u00a012 USD"])
def test_only_ascii_whitespace_surrounds_an_amount(text):
    with pytest.raises(MoneyError):
        parse_amount(text, REGISTRY) if "USD" in text else parse_minor(text, 2)


def test_ascii_whitespace_around_an_amount_is_still_accepted():
    assert parse_minor(" 12.34\n", 2) == 1234
    assert parse_amount("  12.34 USD \n", REGISTRY).minor == 1234


def test_an_amount_with_thousands_of_digits_is_a_money_error_not_a_crash():
    with pytest.raises(MoneyError):
        parse_minor("9" * 5000, 0)
    with pytest.raises(MoneyError):
        parse_amount("9" * 5000 + " USD", REGISTRY)
    with pytest.raises(MoneyError):
        parse_minor(10**5000, 0)


@given(st.text(max_size=50))
def test_whatever_parse_minor_accepts_is_written_in_ascii(text):
    try:
        parse_minor(text, 36, allow_negative=True)
    except MoneyError:
        return
    assert all(c in "0123456789+-. \t\n\r\f\v" for c in text)
