"""The feed's order of work: batches of at most batch_max records, applied one at a time and in
order, each decoded while the previous one is being applied, within a poll and across polls;
what a rebalance, a stop and a failure do to the batch in flight."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from typing import Any

import pytest
from confluent_kafka import TopicPartition

from ledger.events.codec import EventCodec
from ledger.events.records import AccountOpened
from ledger.events.schema_store import SchemaStore
from projector.batch import BatchResult
from projector.consumed import ConsumedRecord, DecodedRecord, UndecodableRecord, consumed_records
from projector.feed import Feed, FeedFailed
from projector.prediction import Prediction
from projector.status import Status
from tests.unit.event_envelopes import envelope
from tests.unit.feed_fakes import (
    AT,
    FakeConsumer,
    FakeMessage,
    Recorder,
    deposits,
    feed_of,
    logging_codec,
)


@pytest.fixture
def log() -> list[str]:
    return []


@pytest.fixture
def codec(schema_store: SchemaStore, log: list[str]) -> EventCodec:
    return logging_codec(schema_store, log)


def test_batches_apply_in_order_each_decoded_while_the_previous_applies(
    codec: EventCodec, log: list[str]
) -> None:
    recorder = Recorder(log)
    consumer = FakeConsumer()
    messages = deposits(codec, 10)

    feed = feed_of(codec, recorder, 4)
    assert feed._apply_in_order(messages)

    # More than a batch's worth (catching up): the last batch is left in flight, and the next
    # poll's records are decoded while it applies.
    assert log == [
        "decode 4",
        "apply 4",
        "decode 4",
        "wait 1",
        "apply 4",
        "decode 2",
        "wait 2",
        "apply 2",
    ]
    assert [[r.offset for r in batch] for batch in recorder.batches] == [
        [0, 1, 2, 3],
        [4, 5, 6, 7],
        [8, 9],
    ]
    assert isinstance(recorder.batches[0][3], UndecodableRecord)
    assert all(isinstance(r, DecodedRecord) for r in recorder.batches[1])
    # Kafka's offsets (for lag tools) are committed at most once a second, not per batch: the
    # next commit carries the last applied offset of each partition, not the one in flight.
    assert consumer.committed == []
    feed._lag.commit(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [8]
    feed._finish_in_flight()
    feed._lag.commit(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [8, 10]


def test_live_records_fewer_than_a_batch_are_waited_for(codec: EventCodec, log: list[str]) -> None:
    feed = feed_of(codec, Recorder(log), 4)

    assert feed._apply_in_order(deposits(codec, 4)[:3])

    assert log == ["decode 3", "apply 3", "wait 1"]
    assert feed._in_flight is None


def test_each_batch_is_projected_on_top_of_the_one_in_flight(
    codec: EventCodec, log: list[str]
) -> None:
    recorder = Recorder(log)
    opened = AccountOpened(
        **envelope("acc", 1, AT, command_id="c-open"),
        currency="EUR",
        owner="Ada",
    )
    deposited = [message.value() for message in deposits(codec, 4)[:3]]
    messages = [FakeMessage(o, v) for o, v in enumerate([codec.encode(opened), *deposited])]

    assert feed_of(codec, recorder, 2)._apply_in_order(messages)  # type: ignore[arg-type]

    first, second = recorder.predictions
    assert first is not None
    assert second is not None
    # Predicted before the first batch committed: from the account as that batch leaves it.
    assert (second.assumed, set(second.missing)) == ({0: 1}, set())
    assert second.writes.projection.accounts["acc"].account.balance == 3


def test_a_failed_batch_stops_every_later_one(codec: EventCodec, log: list[str]) -> None:
    recorder = Recorder(log, fail_at=2)
    consumer = FakeConsumer()
    feed = feed_of(codec, recorder, 4)

    with pytest.raises(RuntimeError, match="contradiction"):
        feed._apply_in_order(deposits(codec, 10))

    assert len(recorder.batches) == 2
    feed._lag.commit(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [4]


def test_when_stopped_only_the_batch_in_flight_is_finished(
    codec: EventCodec, log: list[str]
) -> None:
    recorder = Recorder(log)
    consumer = FakeConsumer()
    feed = feed_of(codec, recorder, 4)
    applying = recorder.apply

    def apply_then_stop(
        records: Sequence[ConsumedRecord], prediction: Prediction | None = None
    ) -> Future[BatchResult]:
        feed.stop()
        return applying(records, prediction)

    recorder.apply = apply_then_stop  # type: ignore[method-assign]
    feed._apply_batch = apply_then_stop

    assert not feed._apply_in_order(deposits(codec, 10))

    assert len(recorder.batches) == 1
    feed._lag.commit(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [4]


def _assign(feed: Feed, consumer: FakeConsumer, *partitions: int) -> None:
    feed._on_assign(consumer, [TopicPartition("events", p) for p in partitions])  # type: ignore[arg-type]


def test_a_catch_up_decodes_the_next_poll_without_waiting_for_the_batch_in_flight(
    codec: EventCodec, log: list[str]
) -> None:
    messages = deposits(codec, 8)
    consumer = FakeConsumer(log, [messages[6:8], []])
    feed = feed_of(codec, Recorder(log), 2)
    _assign(feed, consumer, 0)
    assert feed._apply_in_order(messages[4:6])
    log.clear()

    polled = feed._next_messages(consumer)  # type: ignore[arg-type]
    assert feed._apply_in_order(polled)

    # A batch's worth was fetched: decoded before the batch in flight is waited for.
    assert [m.offset() for m in polled] == [6, 7]
    assert log == ["poll 0", "consume 0", "decode 2", "wait 1", "apply 2"]
    log.clear()
    # Nothing fetched: only now is the batch in flight waited for, then the poll may wait.
    assert feed._next_messages(consumer) == []  # type: ignore[arg-type]
    assert log == ["poll 0", "wait 2", "poll 0.5"]


def test_live_records_wait_for_the_batch_in_flight_and_take_what_arrived_meanwhile(
    codec: EventCodec, log: list[str]
) -> None:
    messages = deposits(codec, 8)
    consumer = FakeConsumer(log, [messages[6:7], messages[7:8]])
    recorder = Recorder(log)
    feed = feed_of(codec, recorder, 2)
    _assign(feed, consumer, 0)
    assert feed._apply_in_order(messages[4:6])
    log.clear()

    polled = feed._next_messages(consumer)  # type: ignore[arg-type]

    # Fewer than a batch: what arrived while the batch in flight committed goes with them.
    # What was already fetched is decoded before the wait, while that batch commits.
    assert [m.offset() for m in polled] == [6, 7]
    assert log == ["poll 0", "consume 0", "decode 1", "wait 1", "consume 0"]
    log.clear()
    assert feed._apply_in_order(polled)
    # Only the record that arrived meanwhile is decoded now; the batch is in log order.
    assert log == ["decode 1", "apply 2"]
    assert [r.offset for r in recorder.batches[-1]] == [6, 7]
    assert recorder.batches[-1] == [_decoded(codec, m) for m in polled]


def _decoded(codec: EventCodec, message: Any) -> ConsumedRecord:
    (record,) = consumed_records(codec, [message])
    return record


def test_records_of_partitions_no_longer_ours_are_dropped(
    codec: EventCodec, log: list[str]
) -> None:
    consumer = FakeConsumer(log, [deposits(codec, 4)[:2]])
    feed = feed_of(codec, Recorder(log), 4)
    _assign(feed, consumer, 0)
    feed._on_revoke(consumer, [TopicPartition("events", 0)])  # type: ignore[arg-type]

    assert feed._next_messages(consumer) == []  # type: ignore[arg-type]


def test_a_revocation_finishes_the_batch_in_flight_before_the_partitions_go(
    codec: EventCodec, log: list[str]
) -> None:
    consumer = FakeConsumer(log)
    feed = feed_of(codec, Recorder(log), 3)
    _assign(feed, consumer, 0)
    assert feed._apply_in_order(deposits(codec, 6))
    assert log[-1] == "apply 3"

    feed._on_revoke(consumer, [TopicPartition("events", 0)])  # type: ignore[arg-type]

    assert log[-1] == "wait 2"
    assert feed._in_flight is None
    # What the batch committed reached Kafka's offsets before the partition went.
    assert consumer.committed == [6]


def test_a_batch_that_failed_during_a_rebalance_is_raised_once_by_the_next_poll(
    codec: EventCodec, log: list[str]
) -> None:
    consumer = FakeConsumer(log)
    feed = feed_of(codec, Recorder(log, fail_at=1), 2)
    _assign(feed, consumer, 0)
    assert feed._apply_in_order(deposits(codec, 4)[:2])

    feed._on_lost(consumer, [TopicPartition("events", 0)])  # type: ignore[arg-type]
    assert feed._in_flight is None

    with pytest.raises(RuntimeError, match="contradiction"):
        feed._next_messages(consumer)  # type: ignore[arg-type]
    assert feed._next_messages(consumer) == []  # type: ignore[arg-type]


class FatalError:
    def fatal(self) -> bool:
        return True

    def str(self) -> str:
        return "broker gone for good"


class FailedMessage(FakeMessage):
    def error(self) -> FatalError:  # type: ignore[override]
        return FatalError()


def _runningfeed_of(
    codec: EventCodec, log: list[str], fetched: list[list[Any]]
) -> tuple[Feed, FakeConsumer, Recorder]:
    consumer = FakeConsumer(log, fetched)
    recorder = Recorder(log)
    feed = Feed(
        {},
        "events",
        codec,
        2,
        apply_batch=recorder.apply,
        read_checkpoints=lambda partitions: {},
        status=Status("events"),
        new_consumer=lambda config: consumer,  # type: ignore[arg-type,return-value]
    )
    return feed, consumer, recorder


def test_a_stop_finishes_the_batch_in_flight_then_commits_and_closes(
    codec: EventCodec, log: list[str]
) -> None:
    feed, consumer, recorder = _runningfeed_of(codec, log, [deposits(codec, 4)])
    applying = recorder.apply

    def apply_then_stop(
        records: Sequence[ConsumedRecord], prediction: Prediction | None = None
    ) -> Future[BatchResult]:
        if len(recorder.batches) == 1:
            feed.stop()
        return applying(records, prediction)

    feed._apply_batch = apply_then_stop

    feed.run()

    # Both batches of the poll were sent; the second, left in flight, is finished before the
    # consumer closes, and its offsets reach Kafka's.
    assert log[-3:] == ["apply 2", "wait 2", "close"]
    assert consumer.committed == [2, 4]


def test_an_error_with_a_batch_in_flight_waits_for_it_and_stops_its_retries(
    codec: EventCodec, log: list[str]
) -> None:
    # A batch's worth fetched with a batch in flight, the first of it a fatal error.
    fetched = [deposits(codec, 4), [FailedMessage(4, b""), FailedMessage(5, b"")]]
    feed, consumer, _recorder = _runningfeed_of(codec, log, fetched)

    with pytest.raises(FeedFailed, match="broker gone for good"):
        feed.run()

    assert feed.stopping
    assert log[-5:] == ["apply 2", "poll 0", "consume 0", "wait 2", "close"]
    assert consumer.committed == [2, 4]
