"""evolve refuses events that cannot follow the state: a log or a reader that is wrong must stop,
not drift."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from ledger.domain.account import Account, AccountStatus
from ledger.domain.decider import InconsistentEvent, evolve, replay
from ledger.events import records
from tests.unit.event_envelopes import envelope

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


def opened_event(account_id: str = "a1") -> records.AccountOpened:
    return records.AccountOpened(**envelope(account_id, 1, AT), currency="USD", owner="o")


def deposited(
    version: int, amount: int, balance_after: int | None = None
) -> records.MoneyDeposited:
    return records.MoneyDeposited(
        **envelope("a1", version, AT), balance_after=balance_after, amount=amount
    )


def withdrawn(version: int, amount: int) -> records.MoneyWithdrawn:
    return records.MoneyWithdrawn(**envelope("a1", version, AT), amount=amount)


def closed_event(version: int) -> records.AccountClosed:
    return records.AccountClosed(**envelope("a1", version, AT))


def state(*events: records.Event) -> Account:
    return replay(events)["a1"]


def test_events_written_before_balance_after_existed_still_fold() -> None:
    account = state(opened_event(), deposited(2, 500), withdrawn(3, 200))
    assert (account.balance, account.version, account.status) == (300, 3, AccountStatus.OPEN)


def test_a_matching_balance_after_is_accepted() -> None:
    assert state(opened_event(), deposited(2, 500, balance_after=500)).balance == 500


@pytest.mark.parametrize(
    ("history", "event", "message"),
    [
        ((opened_event(),), opened_event(), "the account was already opened"),
        ((), deposited(2, 100), "the account does not exist"),
        ((), replace(opened_event(), version=2), "an account opens at version 1"),
        ((opened_event(),), deposited(3, 100), "the next event must have version 2"),
        ((opened_event(),), deposited(1, 100), "the next event must have version 2"),
        ((opened_event(),), withdrawn(2, 1), "overdraws the account"),
        (
            (opened_event(), deposited(2, 5)),
            closed_event(3),
            "closes an account whose balance is 5",
        ),
        ((opened_event(), closed_event(2)), deposited(3, 5), "the account is closed"),
        ((opened_event(),), deposited(2, 0), "amount 0 is not positive"),
        ((opened_event(),), deposited(2, 100, balance_after=99), "records balance_after 99"),
    ],
)
def test_evolve_refuses_an_event_that_cannot_follow(
    history: tuple[records.Event, ...], event: records.Event, message: str
) -> None:
    account = replay(history).get("a1")
    with pytest.raises(InconsistentEvent, match=message):
        evolve(account, event)


def test_evolve_refuses_an_event_for_another_account() -> None:
    with pytest.raises(InconsistentEvent, match="applied to account 'a1'"):
        evolve(state(opened_event()), replace(deposited(2, 1), account_id="a2"))


@pytest.mark.parametrize("event_type", [records.TransferDebited, records.TransferCredited])
def test_transfer_events_move_the_balance(
    event_type: type[records.TransferDebited] | type[records.TransferCredited],
) -> None:
    start = state(opened_event(), deposited(2, 1000))
    event = event_type(
        **envelope("a1", 3, AT, command_id="t"),
        amount=300,
        transfer_id="t",
        counterparty_id="b",
    )
    expected = 700 if event_type is records.TransferDebited else 1300
    assert evolve(start, event).balance == expected


def test_events_insist_on_utc_milliseconds() -> None:
    with pytest.raises(ValueError, match="millisecond precision"):
        replace(opened_event(), occurred_at=datetime(2024, 1, 1, 0, 0, 0, 1, tzinfo=UTC))
    with pytest.raises(ValueError, match="UTC datetime"):
        replace(opened_event(), occurred_at=datetime(2024, 1, 1))
