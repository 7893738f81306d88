"""Amounts: `Decimal` in and out, never a float, never rounded.

The API carries money as decimal strings ("12.34"). The client formats an amount exactly and
leaves the number of decimal places to the server, which knows the account's currency and
refuses too many (INVALID_ARGUMENT) rather than the client rounding money away.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation

Amount = Decimal | int | str


def format_amount(amount: Amount) -> str:
    """The API's text for a positive amount: digits with an optional fraction, no exponent.

    Trailing zeros of the fraction are dropped (exactly the same number), so that
    Decimal("1500.00") is accepted on a yen account, which allows no decimal places.
    """
    # bool is an int, and a float cannot hold most amounts (0.1) exactly: both are mistakes.
    if isinstance(amount, bool | float) or not isinstance(amount, Decimal | int | str):
        raise TypeError(f"an amount is a Decimal, int or str, not {type(amount).__name__}")
    try:
        value = Decimal(amount) if not isinstance(amount, str) else Decimal(amount.strip())
    except InvalidOperation:
        raise ValueError(f"amount {amount!r} is not a decimal number") from None
    if not value.is_finite() or value <= 0:
        raise ValueError(f"an amount must be a positive finite number, not {amount!r}")
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


def parse_amount(text: str) -> Decimal:
    """A decimal string from the server ("12.34", "-5.00" never occurs for amounts) as a Decimal."""
    return Decimal(text)
