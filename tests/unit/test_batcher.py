"""The Batcher against a fake event store: what a batch decides, appends and answers."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from command_server.event_store import AppendFailed, AppendUnsettled, DeliveryUnconfirmed, Fenced
from command_server.shards import Shard
from command_server.write_model import WriteModel
from command_server.writer.batcher import Batcher
from command_server.writer.protocol import (
    BROKEN,
    COMMITTING,
    FENCED,
    STALLED,
    UNCHANGED,
    Ack,
    CommandIdReused,
    NotServing,
    WriterFailed,
    pack_command,
    unpack_verdict,
)
from ledger.consistency import ConsistencyToken
from ledger.domain.commands import Command, Deposit, OpenAccount, Transfer, Withdraw
from ledger.domain.rejection import Rejection, RejectionKind
from tests.unit.fake_event_store import FakeEventStore

NOW = datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)
SHARD = Shard(index=0, count=1, partitions=4)


@pytest.fixture
def store() -> FakeEventStore:
    return FakeEventStore()


@pytest.fixture
def model() -> WriteModel:
    return WriteModel(dedupe_window=1000, partitions=SHARD.owned_partitions)


@pytest.fixture
def batcher(model: WriteModel, store: FakeEventStore) -> Batcher:
    return Batcher(model, store, SHARD, clock=lambda: NOW)


def commit(batcher: Batcher, *commands: Command) -> list[Ack | BaseException]:
    """The answers to one batch, as the gRPC side unpacks them."""
    _, _, verdicts = batcher.commit([pack_command(c) for c in commands])
    return [unpack_verdict(v) for v in verdicts]


def opened(account_id: str) -> OpenAccount:
    return OpenAccount(f"open-{account_id}", account_id, "USD", f"owner of {account_id}")


def funded(batcher: Batcher, account_id: str, amount: str) -> None:
    answers = commit(batcher, opened(account_id), Deposit(f"fund-{account_id}", account_id, amount))
    assert all(isinstance(a, Ack) for a in answers), answers


def rejection(answer: Ack | BaseException) -> RejectionKind:
    assert isinstance(answer, Rejection), answer
    return answer.kind


def test_a_later_command_of_a_batch_sees_what_an_earlier_one_opened(
    batcher: Batcher, model: WriteModel, store: FakeEventStore
) -> None:
    answers = commit(batcher, opened("a1"), Deposit("d1", "a1", "10.00"))

    assert [a.version for a in answers if isinstance(a, Ack)] == [1, 2]
    assert model.accounts["a1"].balance == 1000
    assert store.transactions == 1
    assert [event.command_id for event, _ in store.appended] == ["open-a1", "d1"]


def test_a_withdrawal_is_refused_when_an_earlier_one_of_the_batch_used_the_money(
    batcher: Batcher, model: WriteModel, store: FakeEventStore
) -> None:
    funded(batcher, "a1", "10.00")

    first, second = commit(batcher, Withdraw("w1", "a1", "8.00"), Withdraw("w2", "a1", "5.00"))

    assert isinstance(first, Ack)
    assert rejection(second) is RejectionKind.PRECONDITION
    assert model.accounts["a1"].balance == 200
    assert [event.command_id for event, _ in store.appended][-1] == "w1"


def test_a_rejected_command_appends_nothing(
    batcher: Batcher, model: WriteModel, store: FakeEventStore
) -> None:
    (answer,) = commit(batcher, Deposit("d1", "nobody", "1.00"))

    assert rejection(answer) is RejectionKind.NOT_FOUND
    assert store.appended == []
    assert store.transactions == 0
    assert model.outcome("d1") is None


def test_an_accepted_command_is_answered_with_its_version_and_where_its_events_landed(
    batcher: Batcher, store: FakeEventStore
) -> None:
    funded(batcher, "a1", "10.00")
    commit(batcher, opened("a2"))

    (answer,) = commit(batcher, Transfer("t1", "a1", "a2", "3.00"))

    assert isinstance(answer, Ack)
    assert answer.version == 3  # the source's: opened, funded, debited
    landed = {
        partition: offset
        for (event, partition), offset in zip(store.appended, store.offsets, strict=True)
        if event.command_id == "t1"
    }
    assert len(landed) == 2  # a1 and a2 live in different partitions
    assert ConsistencyToken.decode(answer.token).positions == landed


def test_a_retry_with_the_same_id_and_payload_gets_the_original_answer_and_appends_nothing(
    batcher: Batcher, store: FakeEventStore
) -> None:
    funded(batcher, "a1", "10.00")
    (original,) = commit(batcher, Withdraw("w1", "a1", "4.00"))
    appended = list(store.appended)

    (retried,) = commit(batcher, Withdraw("w1", "a1", "4.00"))

    assert isinstance(original, Ack)
    assert retried == original
    assert store.appended == appended


def test_the_same_id_with_another_payload_is_refused_as_reused(
    batcher: Batcher, model: WriteModel, store: FakeEventStore
) -> None:
    funded(batcher, "a1", "10.00")
    appended = list(store.appended)

    (answer,) = commit(batcher, Deposit("fund-a1", "a1", "99.00"))

    assert isinstance(answer, CommandIdReused)
    assert store.appended == appended
    assert model.accounts["a1"].balance == 1000


def test_the_same_id_with_another_payload_inside_one_batch_is_refused_as_reused(
    batcher: Batcher, store: FakeEventStore
) -> None:
    first, second = commit(batcher, opened("a1"), OpenAccount("open-a1", "a2", "USD", "someone"))

    assert isinstance(first, Ack)
    assert isinstance(second, CommandIdReused)
    assert [event.account_id for event, _ in store.appended] == ["a1"]


def test_a_duplicate_inside_one_batch_shares_the_originals_verdict(
    batcher: Batcher, store: FakeEventStore
) -> None:
    first, duplicate = commit(batcher, opened("a1"), opened("a1"))

    assert isinstance(first, Ack)
    assert duplicate == first
    assert len(store.appended) == 1


def test_an_append_failure_answers_every_command_of_the_batch_and_leaves_the_model_as_before(
    batcher: Batcher, model: WriteModel, store: FakeEventStore
) -> None:
    funded(batcher, "a1", "10.00")
    before = model.accounts["a1"]
    batch = (Withdraw("w1", "a1", "8.00"), Withdraw("w2", "a1", "5.00"), opened("a2"))
    store.fail_next = AppendFailed("transaction aborted")

    answers = commit(batcher, *batch)

    assert [type(a) for a in answers] == [AppendFailed] * 3
    assert model.accounts["a1"] is before
    assert "a2" not in model.accounts
    assert model.outcome("w1") is None
    # Decided afresh: the same batch, retried, gets the same decisions as the first time would.
    retried = commit(batcher, *batch)
    assert isinstance(retried[0], Ack)
    assert retried[0].version == 3
    assert rejection(retried[1]) is RejectionKind.PRECONDITION
    assert isinstance(retried[2], Ack)


def test_an_unexpected_append_error_answers_every_command_as_a_writer_failure(
    batcher: Batcher, store: FakeEventStore
) -> None:
    store.fail_next = RuntimeError("librdkafka surprised us")

    answers = commit(batcher, opened("a1"), opened("a2"))

    assert [type(a) for a in answers] == [WriterFailed] * 2
    assert all("librdkafka surprised us" in str(a) for a in answers)


def test_a_fence_answers_not_serving_to_the_batch_and_to_every_later_one(
    batcher: Batcher, model: WriteModel, store: FakeEventStore
) -> None:
    funded(batcher, "a1", "10.00")
    store.fail_next = Fenced("producer fenced")

    fenced, why, verdicts = batcher.commit([pack_command(Deposit("d1", "a1", "1.00"))])
    later, later_why, later_verdicts = batcher.commit([pack_command(Deposit("d2", "a1", "1.00"))])

    assert fenced == later == FENCED
    assert why == later_why == "producer fenced"
    answers = [unpack_verdict(v) for v in verdicts + later_verdicts]
    assert [type(a) for a in answers] == [NotServing, NotServing]
    assert store.transactions == 2  # the funding, then the fenced one: no append after it
    assert model.accounts["a1"].balance == 1000


def test_a_fence_an_idle_probe_finds_stops_the_writer_like_one_a_commit_finds(
    batcher: Batcher, store: FakeEventStore
) -> None:
    store.fence = Fenced("producer fenced")

    health, why, _ = batcher.probe()
    later, _, verdicts = batcher.commit([pack_command(opened("a1"))])

    assert health == later == FENCED
    assert why == "producer fenced"
    assert [type(unpack_verdict(v)) for v in verdicts] == [NotServing]
    assert store.transactions == 0


def test_a_batch_that_commits_reports_kafka_committing_and_one_without_events_nothing_new(
    batcher: Batcher,
) -> None:
    health, _, _ = batcher.commit([pack_command(opened("a1"))])
    refused, _, _ = batcher.commit([pack_command(Deposit("d1", "nobody", "1.00"))])

    assert (health, refused) == (COMMITTING, UNCHANGED)


def test_an_unsettled_transaction_that_committed_is_learnt_from_the_log_not_appended_again(
    batcher: Batcher, model: WriteModel, store: FakeEventStore
) -> None:
    funded(batcher, "a1", "10.00")
    store.fail_next = AppendUnsettled("broker gone mid-commit")
    store.commit_anyway = True
    deposit = Deposit("d1", "a1", "1.00")

    health, _, verdicts = batcher.commit([pack_command(deposit)])
    store.commit_anyway = False
    retried = commit(batcher, deposit)

    assert health == STALLED
    assert [type(unpack_verdict(v)) for v in verdicts] == [AppendFailed]
    assert isinstance(retried[0], Ack)
    assert retried[0].version == 3
    assert model.accounts["a1"].balance == 1100
    deposits = [e for e in store.log[SHARD.partition_of("a1")] if e.command_id == "d1"]
    assert len(deposits) == 1


def test_while_the_log_cannot_be_read_back_batches_are_refused_and_probes_say_stalled(
    batcher: Batcher, store: FakeEventStore
) -> None:
    funded(batcher, "a1", "10.00")
    store.fail_next = AppendUnsettled("broker gone")
    store.down = "broker gone"
    batcher.commit([pack_command(Deposit("d1", "a1", "1.00"))])
    appends = store.transactions

    health, _, verdicts = batcher.commit([pack_command(Deposit("d2", "a1", "1.00"))])
    probed, why, _ = batcher.probe()

    assert (health, probed) == (STALLED, STALLED)
    assert "broker gone" in why
    assert [type(unpack_verdict(v)) for v in verdicts] == [NotServing]
    assert store.transactions == appends
    store.down = None
    assert batcher.probe()[0] == COMMITTING
    assert isinstance(commit(batcher, Deposit("d2", "a1", "1.00"))[0], Ack)


def test_an_aborted_append_stalls_without_reading_the_log_back(
    batcher: Batcher, store: FakeEventStore
) -> None:
    store.fail_next = AppendFailed("transaction aborted")

    health, _, _ = batcher.commit([pack_command(opened("a1"))])

    assert health == STALLED
    assert store.recoveries == 0


def test_a_missing_delivery_report_stops_the_writer(
    batcher: Batcher, store: FakeEventStore
) -> None:
    store.fail_next = DeliveryUnconfirmed("1 of 1 delivery reports are missing")

    health, why, verdicts = batcher.commit([pack_command(opened("a1"))])
    later, _, _ = batcher.commit([pack_command(opened("a2"))])

    assert (health, later) == (BROKEN, BROKEN)
    assert "delivery reports" in why
    assert [type(unpack_verdict(v)) for v in verdicts] == [NotServing]
    assert store.transactions == 1


def test_a_log_that_cannot_be_read_back_after_an_unsettled_transaction_stops_the_writer(
    batcher: Batcher, store: FakeEventStore
) -> None:
    funded(batcher, "a1", "10.00")
    store.fail_next = AppendUnsettled("broker gone mid-commit")
    store.log.setdefault(SHARD.partition_of("a1"), []).append(
        store.log[SHARD.partition_of("a1")][0]
    )

    health, _, _ = batcher.commit([pack_command(Deposit("d1", "a1", "1.00"))])
    later, why, _ = batcher.commit([pack_command(Deposit("d2", "a1", "1.00"))])

    assert (health, later) == (BROKEN, BROKEN)
    assert "already opened" in why
