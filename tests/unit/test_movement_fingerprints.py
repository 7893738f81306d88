"""The movements' direct spellings (a fingerprint in one string, an amount parsed by str
methods) give what the general ones give, for any text."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.domain import commands
from ledger.domain.money import (
    _split_positive_decimal,
    parse_amount,
    parse_canonical_amount,
    require_positive_decimal,
)
from ledger.domain.rejection import Rejection

texts = st.text(max_size=12) | st.sampled_from(["", "a1", 'q"uote', "back\\slash", "é", "\x00"])
amounts = st.from_regex(r"[0-9]{0,22}(\.[0-9]{0,6})?", fullmatch=True) | st.text(
    alphabet="0123456789.,+-e ٣²", max_size=44
)
versions = st.none() | st.integers(-(2**70), 2**70)
deposits = st.builds(commands.Deposit, texts, texts, amounts, versions, texts, texts)
withdrawals = st.builds(commands.Withdraw, texts, texts, amounts, versions, texts, texts)
transfers = st.builds(commands.Transfer, texts, texts, texts, amounts, versions, texts, texts)
SETTINGS = settings(max_examples=500, deadline=None)


@SETTINGS
@given(deposits | withdrawals | transfers)
def test_a_movement_s_fingerprint_is_the_digest_of_its_canonical_payload(
    command: commands.Deposit | commands.Withdraw | commands.Transfer,
) -> None:
    general = commands._digest(
        commands._payload(command, commands.canonical_amount, with_owner=False)
    )
    assert commands.fingerprint(command) == general
    amount = commands.canonical_amount(command.amount)
    assert commands.movement_fingerprint(command, amount) == general


def test_a_version_that_is_not_an_int_goes_to_the_encoder() -> None:
    command = commands.Deposit("c", "a", "1", True)
    general = commands._digest(commands._payload(command, str, with_owner=False))
    assert commands.movement_fingerprint(command, "1") == general


def _parsed(text: str, currency: str) -> object:
    try:
        return parse_amount(text, currency), commands.canonical_amount(text)
    except Rejection as rejection:
        return rejection.kind, rejection.message


@settings(max_examples=1000, deadline=None)
@given(amounts, st.sampled_from(["USD", "JPY", "KWD", "CLF", "XXX", ""]))
def test_parsing_an_amount_with_its_canonical_text_is_parse_amount_and_canonical_amount(
    text: str, currency: str
) -> None:
    try:
        fast: object = parse_canonical_amount(text, currency)
    except Rejection as rejection:
        fast = rejection.kind, rejection.message
    assert fast == _parsed(text, currency)


def _checked(check: Callable[[str], object], text: str) -> object:
    try:
        check(text)
    except Rejection as rejection:
        return rejection.kind, rejection.message
    return None


@settings(max_examples=1000, deadline=None)
@given(amounts)
def test_checking_a_decimal_by_str_methods_is_checking_it_by_the_regular_expression(
    text: str,
) -> None:
    assert _checked(require_positive_decimal, text) == _checked(_split_positive_decimal, text)
