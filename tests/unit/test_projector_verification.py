"""The independent fold a rebuild is checked against, and how differences are reported."""

from __future__ import annotations

from datetime import UTC, datetime

from ledger.domain.commands import Deposit, OpenAccount, Transfer
from ledger.domain.decider import decide, replay
from ledger.events.records import Event
from projector.verification import AccountSummary, Fold, differences

NOW = datetime(2026, 5, 1, tzinfo=UTC)


def _history() -> list[Event]:
    events: list[Event] = []
    for command in (
        OpenAccount("c1", "a", "USD", "Ada"),
        OpenAccount("c2", "b", "USD", "Bob"),
        Deposit("c3", "a", "10"),
        Transfer("c4", "a", "b", "4"),
    ):
        events += decide(command, replay(events), NOW)
    return events


def test_the_fold_counts_balances_versions_and_movements() -> None:
    fold = Fold()
    fold.add(_history())
    assert fold.summaries() == {
        "a": AccountSummary(balance=600, version=3, status="OPEN", movements=2),
        "b": AccountSummary(balance=400, version=2, status="OPEN", movements=1),
    }


def test_differences_name_the_account_and_both_sides() -> None:
    fold = Fold()
    fold.add(_history())
    expected = fold.summaries()
    actual = {
        "a": AccountSummary(balance=600, version=3, status="OPEN", movements=1),
        "ghost": AccountSummary(balance=0, version=1, status="OPEN", movements=0),
    }
    found = differences(expected, actual)
    assert len(found) == 3
    assert found[0].startswith("account 'a': log says AccountSummary(balance=600")
    assert "movements=1)" in found[0]
    assert found[1] == f"account 'b': log says {expected['b']}, read model has None"
    assert found[2].startswith("account 'ghost': log says None")
    assert differences(expected, dict(expected)) == []
