"""Exact money: decimal strings at the edge, integer minor units (cents, yen, fils) inside.

No binary floating point is used anywhere: amounts are parsed digit by digit into integers.
"""

from __future__ import annotations

import re

from ledger.domain.rejection import Rejection, RejectionKind

INT64_MAX = 2**63 - 1
"""Events store amounts as Avro `long`, so no amount or balance may exceed this many minor units."""

_MAX_AMOUNT_TEXT = 40
"""No valid amount is longer (int64 has 19 digits), so longer text is refused before any work."""

# ISO 4217 active codes with their number of minor-unit digits. Codes without minor units in the
# standard (precious metals, SDR, test codes) are left out: they cannot hold an account.
_EXPONENT_0 = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_EXPONENT_3 = "BHD IQD JOD KWD LYD OMR TND"
_EXPONENT_4 = "CLF UYW"
_EXPONENT_2 = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BOV BRL BSD BTN BWP "
    "BYN BZD CAD CDF CHE CHF CHW CNY COP COU CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD "
    "FKP GBP GEL GHS GIP GMD GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD "
    "KZT LAK LBP LKR LRD LSL MAD MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MXV MYR MZN NAD "
    "NGN NIO NOK NPR NZD PAB PEN PGK PHP PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP "
    "SLE SOS SRD SSP STN SVC SYP SZL THB TJS TMT TOP TRY TTD TWD TZS UAH USD USN UYU UZS VED "
    "VES WST XCD XCG YER ZAR ZMW ZWG"
)
_EXPONENTS: dict[str, int] = {
    code: exponent
    for exponent, codes in ((0, _EXPONENT_0), (2, _EXPONENT_2), (3, _EXPONENT_3), (4, _EXPONENT_4))
    for code in codes.split()
}

# ASCII digits only: `\d` would also accept other scripts' digits, which int() silently converts.
_DECIMAL = re.compile(r"(?P<whole>[0-9]+)(?:\.(?P<fraction>[0-9]+))?")


def currency_exponent(currency: str) -> int:
    """Number of decimal places of an ISO 4217 currency: 2 for USD, 0 for JPY, 3 for KWD."""
    try:
        return _EXPONENTS[currency]
    except KeyError:
        raise Rejection(
            RejectionKind.INVALID,
            f"unknown currency {currency!r}: expected an ISO 4217 code such as 'USD' or 'EUR'",
        ) from None


def known_currencies() -> frozenset[str]:
    """Every currency `currency_exponent` knows."""
    return frozenset(_EXPONENTS)


def require_positive_decimal(text: str) -> None:
    """Check what parse_amount can check without knowing the currency (syntax, sign, zero).

    Lets a caller report a malformed amount before it looks the account (and its currency) up.
    """
    digits = plain_digits(text)
    if digits is None or not (digits[0] + digits[1]).strip("0"):
        _split_positive_decimal(text)  # which says what is wrong


def parse_amount(text: str, currency: str) -> int:
    """Parse a positive decimal string such as "12.34" into minor units of `currency` (1234).

    Raises Rejection(INVALID) if the text is not plain digits with an optional fraction, is zero,
    has more decimal places than the currency allows, or does not fit in 64 bits.
    """
    return _parsed(text, currency)[0]


def parse_canonical_amount(text: str, currency: str) -> tuple[int, str]:
    """`parse_amount`'s minor units, and the amount's canonical text (`canonical_decimal`) from
    the same parse: deciding a movement needs both (the second for its fingerprint)."""
    digits = plain_digits(text)
    exponent = _EXPONENTS.get(currency, -1)
    if digits is not None and len(digits[1]) <= exponent:
        whole, fraction = digits
        minor = int(whole + fraction.ljust(exponent, "0"))
        if 0 < minor <= INT64_MAX:
            return minor, canonical_decimal(whole, fraction)
    # Anything else (a zero, too many places, too large) the general way, which says why.
    minor, whole, fraction = _parsed(text, currency)
    return minor, canonical_decimal(whole, fraction)


def canonical_decimal(whole: str, fraction: str) -> str:
    """A decimal's digits without leading zeros or trailing fractional zeros (`007`, `50` ->
    `7.5`): the amount a command's fingerprint holds (ledger/domain/commands.py)."""
    whole, fraction = whole.lstrip("0") or "0", fraction.rstrip("0")
    return f"{whole}.{fraction}" if fraction else whole


def _parsed(text: str, currency: str) -> tuple[int, str, str]:
    """The minor units of a positive decimal in `currency`, and its whole and fraction digits."""
    exponent = currency_exponent(currency)
    whole, fraction = _split_positive_decimal(text)
    if len(fraction) > exponent:
        raise Rejection(
            RejectionKind.INVALID,
            f"amount {text!r} has {len(fraction)} decimal places but {currency} allows at most "
            f"{exponent}",
        )
    minor = int(whole + fraction.ljust(exponent, "0"))
    if minor > INT64_MAX:
        raise Rejection(
            RejectionKind.INVALID,
            f"amount {text!r} is too large: at most {format_amount(INT64_MAX, currency)} "
            f"{currency}",
        )
    return minor, whole, fraction


def format_amount(minor: int, currency: str) -> str:
    """Format minor units as a decimal string with the currency's places: 1234 USD -> "12.34"."""
    exponent = currency_exponent(currency)
    sign = "-" if minor < 0 else ""
    digits = str(abs(minor)).rjust(exponent + 1, "0")
    if exponent == 0:
        return sign + digits
    return f"{sign}{digits[:-exponent]}.{digits[-exponent:]}"


def plain_digits(text: str) -> tuple[str, str] | None:
    """The whole and fraction digits of `text` if `_DECIMAL` matches it and it is not too long,
    otherwise None: checked by str's methods, in C, at a fraction of the regular expression's
    cost (tests/unit/test_movement_fingerprints.py holds the two ways equal)."""
    whole, dot, fraction = text.partition(".")
    if (
        len(text) <= _MAX_AMOUNT_TEXT
        and text.isascii()
        and whole.isdigit()
        and (fraction.isdigit() or not dot)
    ):
        return whole, fraction
    return None


def _split_positive_decimal(text: str) -> tuple[str, str]:
    """The whole and fraction digits of a positive decimal string."""
    if len(text) > _MAX_AMOUNT_TEXT:
        raise Rejection(
            RejectionKind.INVALID,
            f"amount is too long ({len(text)} characters, at most {_MAX_AMOUNT_TEXT}): "
            f"{text[:_MAX_AMOUNT_TEXT]!r}...",
        )
    match = _DECIMAL.fullmatch(text)
    if match is None:
        raise Rejection(
            RejectionKind.INVALID,
            f"amount {text!r} is not a decimal number: expected digits with an optional "
            "fraction, such as '12.34', without sign, exponent or spaces",
        )
    whole, fraction = match["whole"], match["fraction"] or ""
    if not (whole + fraction).strip("0"):
        raise Rejection(RejectionKind.INVALID, f"amount {text!r} must be greater than zero")
    return whole, fraction
