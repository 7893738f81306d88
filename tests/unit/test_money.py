from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain.money import (
    INT64_MAX,
    currency_exponent,
    format_amount,
    parse_amount,
    require_positive_decimal,
)
from ledger.domain.rejection import Rejection, RejectionKind


@pytest.mark.parametrize(
    ("currency", "exponent"),
    [("USD", 2), ("EUR", 2), ("GBP", 2), ("JPY", 0), ("KRW", 0), ("KWD", 3), ("BHD", 3)],
)
def test_currency_exponent_follows_iso_4217(currency: str, exponent: int) -> None:
    assert currency_exponent(currency) == exponent


@pytest.mark.parametrize("currency", ["XYZ", "usd", "", "US", "USDD", "XAU"])
def test_unknown_currency_is_invalid(currency: str) -> None:
    with pytest.raises(Rejection) as caught:
        currency_exponent(currency)
    assert caught.value.kind is RejectionKind.INVALID
    assert f"unknown currency {currency!r}" in caught.value.message


@pytest.mark.parametrize(
    ("text", "currency", "minor"),
    [
        ("12.34", "USD", 1234),
        ("12.3", "USD", 1230),
        ("12", "USD", 1200),
        ("0.01", "USD", 1),
        ("007.50", "EUR", 750),
        ("5", "JPY", 5),
        ("1.234", "KWD", 1234),
        ("0.001", "KWD", 1),
        ("92233720368547758.07", "USD", INT64_MAX),
        ("9223372036854775807", "JPY", INT64_MAX),
    ],
)
def test_parse_amount_gives_exact_minor_units(text: str, currency: str, minor: int) -> None:
    assert parse_amount(text, currency) == minor


@pytest.mark.parametrize(
    ("text", "currency", "message"),
    [
        ("", "USD", "is not a decimal number"),
        ("abc", "USD", "is not a decimal number"),
        ("-1.00", "USD", "is not a decimal number"),
        ("+1.00", "USD", "is not a decimal number"),
        (" 1.00", "USD", "is not a decimal number"),
        ("1.00 ", "USD", "is not a decimal number"),
        ("1e3", "USD", "is not a decimal number"),
        ("1,00", "USD", "is not a decimal number"),
        ("1.", "USD", "is not a decimal number"),
        (".5", "USD", "is not a decimal number"),
        ("1.2.3", "USD", "is not a decimal number"),
        ("NaN", "USD", "is not a decimal number"),
        ("١٢", "USD", "is not a decimal number"),  # Arabic-Indic digits: int() would accept them
        ("0", "USD", "must be greater than zero"),
        ("0.00", "USD", "must be greater than zero"),
        ("12.345", "USD", "has 3 decimal places but USD allows at most 2"),
        ("5.0", "JPY", "has 1 decimal places but JPY allows at most 0"),
        ("1.0000", "KWD", "has 4 decimal places but KWD allows at most 3"),
        ("92233720368547758.08", "USD", "is too large: at most 92233720368547758.07 USD"),
        ("99999999999999999999999", "JPY", "is too large"),
        ("1" * 41, "USD", "amount is too long (41 characters, at most 40)"),
        ("1.00", "ABC", "unknown currency 'ABC'"),
    ],
)
def test_parse_amount_rejects_what_is_not_an_exact_positive_amount(
    text: str, currency: str, message: str
) -> None:
    with pytest.raises(Rejection) as caught:
        parse_amount(text, currency)
    assert caught.value.kind is RejectionKind.INVALID
    assert message in caught.value.message


def test_require_positive_decimal_checks_what_needs_no_currency() -> None:
    require_positive_decimal("12.345678")
    with pytest.raises(Rejection, match="must be greater than zero"):
        require_positive_decimal("0.000")
    with pytest.raises(Rejection, match="is not a decimal number"):
        require_positive_decimal("12,34")


@pytest.mark.parametrize(
    ("minor", "currency", "text"),
    [
        (1234, "USD", "12.34"),
        (5, "USD", "0.05"),
        (0, "USD", "0.00"),
        (100, "USD", "1.00"),
        (5, "JPY", "5"),
        (0, "JPY", "0"),
        (1, "KWD", "0.001"),
        (-1234, "USD", "-12.34"),
        (-5, "USD", "-0.05"),
        (INT64_MAX, "USD", "92233720368547758.07"),
    ],
)
def test_format_amount_uses_the_currency_places(minor: int, currency: str, text: str) -> None:
    assert format_amount(minor, currency) == text


@settings(max_examples=300)
@given(
    minor=st.integers(min_value=1, max_value=INT64_MAX),
    currency=st.sampled_from(["USD", "JPY", "KWD", "CLF"]),
)
def test_format_then_parse_is_the_identity(minor: int, currency: str) -> None:
    assert parse_amount(format_amount(minor, currency), currency) == minor
