"""Deposit and Withdraw: given some accounts, when a command arrives, then these events, or this
rejection."""

from __future__ import annotations

import pytest

from ledger.domain.commands import Deposit, Withdraw, fingerprint
from ledger.domain.decider import decide, replay
from ledger.domain.rejection import RejectionKind
from ledger.events.records import MoneyDeposited, MoneyWithdrawn
from tests.unit.decider_givens import NOW, closed, funded, given, opened, rejected
from tests.unit.event_envelopes import envelope

# --- Deposit ---


def test_deposit_credits_the_account() -> None:
    accounts = given(opened("a1"))
    command = Deposit("d1", "a1", "12.34")

    events = decide(command, accounts, NOW)

    assert events == [
        MoneyDeposited(
            **envelope("a1", 2, NOW, command_id="d1", fingerprint=fingerprint(command)),
            balance_after=1234,
            amount=1234,
        )
    ]
    assert replay(events, accounts)["a1"].balance == 1234


def test_deposit_into_an_unknown_account_is_not_found() -> None:
    rejection = rejected(Deposit("d1", "nobody", "1.00"), {})
    assert rejection.kind is RejectionKind.NOT_FOUND
    assert rejection.message == "account 'nobody' does not exist"


def test_a_malformed_amount_is_invalid_even_before_the_account_is_looked_up() -> None:
    rejection = rejected(Deposit("d1", "nobody", "1,00"), {})
    assert rejection.kind is RejectionKind.INVALID
    assert "amount '1,00' is not a decimal number" in rejection.message


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        ("0", "USD", "amount '0' must be greater than zero"),
        ("-5", "USD", "amount '-5' is not a decimal number"),
        ("1.001", "USD", "amount '1.001' has 3 decimal places but USD allows at most 2"),
        ("1.5", "JPY", "amount '1.5' has 1 decimal places but JPY allows at most 0"),
        ("92233720368547758.08", "USD", "is too large"),
    ],
)
def test_deposit_of_a_bad_amount_is_invalid(amount: str, currency: str, message: str) -> None:
    rejection = rejected(Deposit("d1", "a1", amount), given(opened("a1", currency)))
    assert rejection.kind is RejectionKind.INVALID
    assert message in rejection.message


def test_deposit_into_a_closed_account_is_a_failed_precondition() -> None:
    rejection = rejected(Deposit("d1", "a1", "1.00"), given(*closed("a1")))
    assert rejection.kind is RejectionKind.PRECONDITION
    assert rejection.message == "cannot deposit into account 'a1': it is closed"


def test_deposit_that_would_exceed_64_bits_is_a_failed_precondition() -> None:
    accounts = given(*funded("a1", "9223372036854775807", currency="JPY"))
    rejection = rejected(Deposit("d2", "a1", "1"), accounts)
    assert rejection.kind is RejectionKind.PRECONDITION
    assert "account 'a1' cannot hold more than 9223372036854775807 JPY" in rejection.message


def test_deposit_with_the_current_expected_version_is_accepted() -> None:
    [event] = decide(Deposit("d1", "a1", "1.00", expected_version=1), given(opened("a1")), NOW)
    assert event.version == 2


def test_deposit_with_a_stale_expected_version_is_a_version_conflict() -> None:
    accounts = given(*funded("a1", "5.00"))
    rejection = rejected(Deposit("d2", "a1", "1.00", expected_version=1), accounts)
    assert rejection.kind is RejectionKind.VERSION_CONFLICT
    assert rejection.message == (
        "account 'a1' is at version 2, not the expected version 1: read it again and decide anew"
    )


def test_an_expected_version_below_1_is_invalid() -> None:
    rejection = rejected(Deposit("d1", "a1", "1.00", expected_version=0), given(opened("a1")))
    assert rejection.kind is RejectionKind.INVALID
    assert "expected_version must be at least 1" in rejection.message


# --- Withdraw ---


def test_withdraw_debits_the_account() -> None:
    accounts = given(*funded("a1", "10.00"))
    command = Withdraw("w1", "a1", "2.50", expected_version=2)

    events = decide(command, accounts, NOW)

    assert events == [
        MoneyWithdrawn(
            **envelope("a1", 3, NOW, command_id="w1", fingerprint=fingerprint(command)),
            balance_after=750,
            amount=250,
        )
    ]


def test_withdrawing_the_whole_balance_leaves_zero() -> None:
    accounts = given(*funded("a1", "10.00"))
    assert replay(decide(Withdraw("w1", "a1", "10"), accounts, NOW), accounts)["a1"].balance == 0


def test_withdrawing_more_than_the_balance_is_insufficient_funds() -> None:
    rejection = rejected(Withdraw("w1", "a1", "12.00"), given(*funded("a1", "10.00")))
    assert rejection.kind is RejectionKind.PRECONDITION
    assert rejection.message == (
        "insufficient funds: account 'a1' balance 10.00 USD, withdrawal 12.00 USD"
    )


def test_withdraw_from_an_unknown_account_is_not_found() -> None:
    assert rejected(Withdraw("w1", "a1", "1"), {}).kind is RejectionKind.NOT_FOUND


def test_withdraw_from_a_closed_account_is_a_failed_precondition() -> None:
    rejection = rejected(Withdraw("w1", "a1", "1.00"), given(*closed("a1")))
    assert rejection.kind is RejectionKind.PRECONDITION
    assert rejection.message == "cannot withdraw from account 'a1': it is closed"


def test_withdraw_with_a_stale_expected_version_is_a_version_conflict() -> None:
    rejection = rejected(Withdraw("w1", "a1", "1.00", expected_version=3), given(opened("a1")))
    assert rejection.kind is RejectionKind.VERSION_CONFLICT


def test_withdraw_of_too_many_decimals_is_invalid() -> None:
    rejection = rejected(Withdraw("w1", "a1", "1.005"), given(*funded("a1", "10.00")))
    assert rejection.kind is RejectionKind.INVALID
