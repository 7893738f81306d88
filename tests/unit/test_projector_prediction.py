"""What the consumer thread predicts a batch writes, and when a prediction may be trusted.

Against real PostgreSQL: tests/integration/projector/test_projector_prediction.py."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.domain.account import Account
from ledger.domain.commands import Command, Deposit, OpenAccount
from ledger.domain.decider import decide, evolve
from projector.batch import BatchResult
from projector.consumed import DecodedRecord
from projector.prediction import AccountView, Prediction

TOPIC = "account_events"


class Log:
    """Valid events, decided by the domain, with each account in the partition it is given."""

    def __init__(self) -> None:
        self.state: dict[str, Account] = {}
        self.offsets: dict[int, int] = {}
        self.now = datetime(2026, 5, 1, 12, tzinfo=UTC)

    def __call__(self, partition: int, *commands: Command) -> list[DecodedRecord]:
        records = []
        for command in commands:
            self.now += timedelta(minutes=1)
            for event in decide(command, self.state, self.now):
                self.state[event.account_id] = evolve(self.state.get(event.account_id), event)
                offset = self.offsets[partition] = self.offsets.get(partition, -1) + 1
                records.append(DecodedRecord(partition, offset, event))
        return records


def committed(prediction: Prediction) -> BatchResult:
    """The result of a batch whose prediction held."""
    writes = prediction.writes
    return BatchResult(
        len(writes.decoded), 0, 0, writes.advanced, {}, writes.projection.accounts, writes
    )


def applied(view: AccountView, records: list[DecodedRecord]) -> None:
    """Predict `records`, hand them over, and settle them as committed as predicted."""
    prediction = view.predict(TOPIC, records)
    assert prediction is not None
    view.sent(prediction)
    assert view.settle(committed(prediction))


def test_a_batch_is_predicted_on_top_of_the_one_in_flight() -> None:
    log, view = Log(), AccountView()
    first = view.predict(TOPIC, log(0, OpenAccount("c1", "a", "EUR", "A")))
    assert first is not None
    assert (first.assumed, first.below, set(first.missing)) == ({}, {0: 0}, {"a"})
    view.sent(first)

    second = view.predict(TOPIC, log(0, Deposit("c2", "a", "5")))

    assert second is not None
    assert (second.assumed, second.below, set(second.missing)) == ({0: 0}, {}, set())
    assert second.writes.projection.accounts["a"].account.balance == 500
    assert view.settle(committed(first))


def test_nothing_is_predicted_on_top_of_a_batch_without_prediction() -> None:
    log, view = Log(), AccountView()
    view.sent(None)
    assert view.predict(TOPIC, log(0, OpenAccount("c1", "a", "EUR", "A"))) is None
    view.settle(BatchResult(1, 0, 0, {0: 0}, {0: -1}))
    after = view.predict(TOPIC, log(0, OpenAccount("c2", "b", "EUR", "B")))
    assert after is not None
    assert after.assumed == {0: 0}


def test_a_batch_that_contradicts_the_view_has_no_prediction() -> None:
    log, view = Log(), AccountView()
    log(0, OpenAccount("c1", "a", "EUR", "A"))
    # The database decides: the transaction projects from it and raises what is wrong there.
    assert view.predict(TOPIC, log(0, Deposit("c2", "a", "5"))) is None


def test_accounts_the_view_holds_in_another_partition_are_left_to_the_database() -> None:
    log, view = Log(), AccountView()
    applied(view, log(0, OpenAccount("c1", "a", "EUR", "A")))
    moved = log(0, Deposit("c2", "a", "5"))
    moved = [DecodedRecord(1, 0, record.event) for record in moved]
    # Projected as if absent, so a deposit cannot follow: no prediction, and the transaction
    # reads the account from the database and raises the partition contradiction itself.
    assert view.predict(TOPIC, moved) is None


def test_a_result_projected_from_the_database_replaces_what_the_view_held() -> None:
    log, view = Log(), AccountView()
    applied(view, log(0, OpenAccount("c1", "a", "EUR", "A")))
    deposit = log(0, Deposit("c2", "a", "5"))
    stale = view.predict(TOPIC, deposit)
    assert stale is not None
    view.sent(stale)

    # Someone else had applied offsets up to 7: nothing written, partition 0 forgotten.
    assert not view.settle(BatchResult(0, 0, 1, {}, {0: 7}))
    again = view.predict(TOPIC, deposit)
    assert again is not None
    assert (again.assumed, set(again.missing), again.writes.decoded) == ({0: 7}, set(), [])


def test_revoked_partitions_are_forgotten() -> None:
    log, view = Log(), AccountView()
    applied(view, log(0, OpenAccount("c1", "a", "EUR", "A")))
    view.forget([0])
    deposit = log(0, Deposit("c2", "a", "5"))
    # The deposit cannot follow an absent account: no prediction, the database decides.
    assert view.predict(TOPIC, deposit) is None


def test_the_view_keeps_the_most_recently_written_accounts() -> None:
    log, view = Log(), AccountView(limit=2)
    for name in ("a", "b", "c"):
        applied(view, log(0, OpenAccount(f"open-{name}", name, "EUR", name)))
    prediction = view.predict(
        TOPIC, log(0, Deposit("d1", "a", "1"), Deposit("d2", "b", "1"), Deposit("d3", "c", "1"))
    )
    # "a" was dropped: it is looked for in the database, so its deposit cannot be predicted.
    assert prediction is None


class FakeConnection:
    def __init__(self, found: bool) -> None:
        self.found = found
        self.asked: list[list[str]] = []

    async def fetchval(self, query: str, ids: list[str]) -> Any:
        self.asked.append(sorted(ids))
        return 1 if self.found else None


def test_a_prediction_holds_only_at_the_checkpoints_it_assumed_with_unknown_accounts_absent() -> (
    None
):
    log, view = Log(), AccountView()
    applied(view, log(0, OpenAccount("c1", "a", "EUR", "A")))
    prediction = view.predict(
        TOPIC, log(0, Deposit("c2", "a", "5")) + log(1, OpenAccount("c3", "b", "EUR", "B"))
    )
    assert prediction is not None
    assert (prediction.assumed, prediction.below) == ({0: 0}, {1: 0})

    def holds(locked: dict[int, int], found: bool) -> tuple[bool, list[list[str]]]:
        connection = FakeConnection(found)
        return asyncio.run(prediction.holds(connection, locked)), connection.asked

    assert holds({0: 0, 1: -1}, found=False) == (True, [["b"]])
    assert holds({0: 0, 1: -1}, found=True) == (False, [["b"]])
    assert holds({0: 3, 1: -1}, found=False) == (False, [])
    assert holds({0: 0, 1: 0}, found=False) == (False, [])


def test_an_account_the_view_never_saw_opened_is_not_predicted() -> None:
    log = Log()
    log(0, OpenAccount("c1", "a", "EUR", "A"))
    # A view that starts after the account was opened (a restart, a new instance): the account
    # exists, so the batch is projected from the database without first asking whether it does.
    view = AccountView()
    assert view.predict(TOPIC, log(0, Deposit("c2", "a", "5"))) is None
    opened = view.predict(TOPIC, log(1, OpenAccount("c3", "b", "EUR", "B")))
    assert opened is not None
    assert set(opened.missing) == {"b"}
