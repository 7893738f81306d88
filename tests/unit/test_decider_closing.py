"""CloseAccount, and the time and identity of every decided event."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ledger.domain.account import AccountStatus
from ledger.domain.commands import CloseAccount, Transfer, fingerprint
from ledger.domain.decider import decide, replay
from ledger.domain.rejection import RejectionKind
from ledger.events.records import AccountClosed
from tests.unit.decider_givens import NOW, closed, funded, given, opened, rejected
from tests.unit.event_envelopes import envelope

# --- CloseAccount ---


def test_close_account_at_zero_balance() -> None:
    accounts = given(opened("a1"))
    command = CloseAccount("x1", "a1", expected_version=1)

    events = decide(command, accounts, NOW)

    assert events == [
        AccountClosed(
            **envelope("a1", 2, NOW, command_id="x1", fingerprint=fingerprint(command)),
            balance_after=0,
        )
    ]
    assert replay(events, accounts)["a1"].status is AccountStatus.CLOSED


def test_closing_a_non_zero_balance_is_a_failed_precondition() -> None:
    rejection = rejected(CloseAccount("x1", "a1"), given(*funded("a1", "0.01")))
    assert rejection.kind is RejectionKind.PRECONDITION
    assert rejection.message == (
        "cannot close account 'a1': its balance is 0.01 USD, and only a zero balance can be closed"
    )


def test_closing_a_closed_account_is_a_failed_precondition() -> None:
    rejection = rejected(CloseAccount("x2", "a1"), given(*closed("a1")))
    assert rejection.kind is RejectionKind.PRECONDITION
    assert rejection.message == "cannot close account 'a1': it is already closed"


def test_closing_an_unknown_account_is_not_found() -> None:
    assert rejected(CloseAccount("x1", "a1"), {}).kind is RejectionKind.NOT_FOUND


def test_close_with_a_stale_expected_version_is_a_version_conflict() -> None:
    rejection = rejected(CloseAccount("x1", "a1", expected_version=2), given(opened("a1")))
    assert rejection.kind is RejectionKind.VERSION_CONFLICT


# --- time and identity ---


def test_occurred_at_is_now_in_utc_truncated_to_milliseconds() -> None:
    now = datetime(2024, 5, 1, 14, 30, 15, 123987, tzinfo=timezone(timedelta(hours=2)))
    [event] = decide(opened("a1"), {}, now)
    assert event.occurred_at == datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)


def test_a_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(opened("a1"), {}, datetime(2024, 5, 1))


def test_deciding_is_deterministic() -> None:
    accounts = given(*funded("a1", "5.00"), opened("a2"))
    command = Transfer("t1", "a1", "a2", "1.00")
    assert decide(command, accounts, NOW) == decide(command, accounts, NOW)
