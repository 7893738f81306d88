"""What a batch of events turns into in the read model: rows, money, daily summaries, and the
contradictions that must stop the projector."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import pytest

from ledger.domain.account import Account
from ledger.domain.commands import CloseAccount, Command, Deposit, OpenAccount, Transfer, Withdraw
from ledger.domain.decider import decide, evolve
from ledger.events.records import Event, MoneyDeposited
from projector.consumed import DecodedRecord
from projector.projection import (
    MOVEMENT_COLUMNS,
    Contradiction,
    StoredAccount,
    project,
    to_minor,
)
from tests.unit.event_envelopes import envelope

TOPIC = "account_events"
T0 = datetime(2026, 5, 1, 23, 56, tzinfo=UTC)


class Log:
    """Events decided by the domain, numbered like a partition's offsets."""

    def __init__(self) -> None:
        self.state: dict[str, Account] = {}
        self.offset = 0
        self.now = T0

    def __call__(self, command: Command, minutes: int = 1) -> list[DecodedRecord]:
        self.now += timedelta(minutes=minutes)
        records = []
        for event in decide(command, self.state, self.now):
            self.state[event.account_id] = evolve(self.state.get(event.account_id), event)
            records.append(DecodedRecord(0, self.offset, event))
            self.offset += 1
        return records


def _row(movements: list[tuple[object, ...]], index: int) -> dict[str, object]:
    return dict(zip(MOVEMENT_COLUMNS, movements[index], strict=True))


def test_major_units_read_back_as_exact_minor_units() -> None:
    assert to_minor(Decimal("12.34"), "USD") == 1234
    assert to_minor(Decimal("500"), "JPY") == 500
    assert to_minor(Decimal("0.001"), "KWD") == 1
    assert to_minor(Decimal("92233720368547758.07"), "USD") == 2**63 - 1
    assert to_minor(Decimal("12.3"), "USD") == 1230
    with pytest.raises(ValueError, match="decimal places"):
        to_minor(Decimal("1.234"), "USD")


def test_each_movement_kind_becomes_a_row_with_the_balance_after_it() -> None:
    log = Log()
    records = (
        log(OpenAccount("c1", "a", "USD", "Ada"))
        + log(OpenAccount("c2", "b", "USD", "Bob"))
        + log(Deposit("c3", "a", "100.50"))
        + log(Withdraw("c4", "a", "0.50"))
        + log(Transfer("t1", "a", "b", "60"))
    )
    projection = project(TOPIC, records, {})

    deposit, withdrawal, debit, credit = (_row(projection.movements, i) for i in range(4))
    assert [(row["account_id"], row["kind"]) for row in (deposit, withdrawal, debit, credit)] == [
        ("a", "DEPOSIT"),
        ("a", "WITHDRAWAL"),
        ("a", "TRANSFER_OUT"),
        ("b", "TRANSFER_IN"),
    ]
    # Minor units with the currency's exponent: the database makes NUMERIC(…, 2) of them.
    assert (deposit["amount"], deposit["balance_after"], deposit["exponent"]) == (10050, 10050, 2)
    assert (withdrawal["amount"], withdrawal["balance_after"]) == (50, 10000)
    assert (debit["counterparty_id"], debit["transfer_id"], debit["balance_after"]) == (
        "b",
        "t1",
        4000,
    )
    assert (credit["counterparty_id"], credit["transfer_id"], credit["version"]) == ("a", "t1", 2)
    assert deposit["counterparty_id"] is None
    assert deposit["command_id"] == "c3"
    assert (deposit["partition"], deposit["offset"]) == (0, 2)
    assert deposit["event_id"] == records[2].event.event_id

    a = projection.accounts["a"]
    assert (a.account.balance, a.account.version, a.partition, a.closed_at) == (4000, 4, 0, None)
    assert projection.accounts["b"].account.balance == 6000


def test_opening_and_closing_change_the_account_but_are_not_movements() -> None:
    log = Log()
    records = log(OpenAccount("c1", "a", "EUR", "Ada")) + log(CloseAccount("c2", "a"))
    projection = project(TOPIC, records, {})
    assert projection.movements == []
    assert projection.days == {}
    closed = projection.accounts["a"]
    assert closed.account.status.name == "CLOSED"
    assert closed.account.version == 2
    assert closed.closed_at == records[1].event.occurred_at


def test_daily_summaries_are_per_account_and_utc_day() -> None:
    log = Log()
    records = (
        log(OpenAccount("c1", "a", "USD", "Ada"))
        + log(Deposit("c2", "a", "10"))  # 2026-05-01 23:58
        + log(Withdraw("c3", "a", "3"), minutes=2)  # 2026-05-02 00:00
        + log(Deposit("c4", "a", "1.25"))
    )
    projection = project(TOPIC, records, {})
    first = projection.days[("a", date(2026, 5, 1))]
    second = projection.days[("a", date(2026, 5, 2))]
    assert (first.inflow, first.outflow, first.movement_count, first.closing_balance) == (
        1000,
        0,
        1,
        1000,
    )
    assert (second.inflow, second.outflow, second.movement_count, second.closing_balance) == (
        125,
        300,
        2,
        825,
    )
    assert second.currency == "USD"


def test_a_batch_continues_from_the_stored_state() -> None:
    log = Log()
    opened = log(OpenAccount("c1", "a", "USD", "Ada")) + log(Deposit("c2", "a", "5"))
    stored = project(TOPIC, opened, {}).accounts
    later = log(Deposit("c3", "a", "1"))
    projection = project(TOPIC, later, stored)
    assert projection.accounts["a"].account.balance == 600
    assert projection.accounts["a"].account.version == 3


def _deposit(account: str, version: int, amount: int, balance_after: int | None) -> Event:
    return MoneyDeposited(
        **envelope(account, version, T0),
        balance_after=balance_after,
        amount=amount,
    )


def _stored(log: Log) -> dict[str, StoredAccount]:
    return project(TOPIC, log(OpenAccount("c1", "a", "USD", "Ada")), {}).accounts


@pytest.mark.parametrize(
    ("event", "partition", "reason"),
    [
        (_deposit("a", 3, 100, 100), 0, "next event must have version 2"),
        (_deposit("a", 1, 100, 100), 0, "next event must have version 2"),
        (_deposit("nobody", 2, 100, 100), 0, "does not exist"),
        (_deposit("a", 2, 100, 99), 0, "records balance_after 99 but the balance is 100"),
        (_deposit("a", 2, 100, 100), 1, "events are in partition 0, not 1"),
    ],
)
def test_an_event_that_cannot_follow_is_a_contradiction(
    event: Event, partition: int, reason: str
) -> None:
    stored = _stored(Log())
    with pytest.raises(Contradiction, match=reason) as info:
        project(TOPIC, [DecodedRecord(partition, 41, event)], stored)
    message = str(info.value)
    assert f"topic 'account_events' partition {partition} offset 41" in message
    assert f"account {event.account_id!r}, event version {event.version}" in message
    state = "absent" if event.account_id == "nobody" else "at version 1"
    assert f"where the account is {state}" in message
    assert (info.value.partition, info.value.offset) == (partition, 41)


def test_opening_an_existing_account_is_a_contradiction() -> None:
    stored = _stored(Log())
    [reopened] = decide(OpenAccount("c9", "a", "USD", "Ada"), {}, T0)
    with pytest.raises(Contradiction, match="already opened"):
        project(TOPIC, [DecodedRecord(0, 7, reopened)], stored)


def test_events_without_balance_after_are_checked_by_version_only() -> None:
    stored = _stored(Log())
    projection = project(TOPIC, [DecodedRecord(0, 1, _deposit("a", 2, 250, None))], stored)
    assert _row(projection.movements, 0)["balance_after"] == 250


def test_each_second_totals_money_movements_openings_and_closings_per_currency() -> None:
    log = Log()
    records = (
        log(OpenAccount("c1", "a", "USD", "Ada"))  # 23:57
        + log(OpenAccount("c2", "b", "USD", "Bob"), minutes=0)
        + log(Deposit("c3", "a", "10"), minutes=0)
        + log(Transfer("c4", "a", "b", "2.50"), minutes=0)
        + log(Withdraw("c5", "b", "2.50"))  # 23:58
        + log(CloseAccount("c6", "b"), minutes=0)
        + log(OpenAccount("c7", "y", "JPY", "Yui"), minutes=0)
    )
    projection = project(TOPIC, records, {})
    first = (T0 + timedelta(minutes=1) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(seconds=1)
    totals = {
        key: (t.inflow, t.outflow, t.movement_count, t.opened_count, t.closed_count)
        for key, t in projection.seconds.items()
    }
    assert totals == {
        (0, "USD", first): (1000 + 250, 250, 3, 2, 0),
        (0, "USD", first + 60): (0, 250, 1, 0, 1),
        (0, "JPY", first + 60): (0, 0, 0, 1, 0),
    }
