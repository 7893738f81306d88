"""The feed's order of work: batches of at most batch_max records, applied one at a time and in
order, each decoded while the previous one is being applied, within a poll and across polls."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException, TopicPartition

from ledger.events.codec import EventCodec
from ledger.events.records import AccountOpened, MoneyDeposited
from ledger.events.schema_store import SchemaStore
from projector.batch import BatchResult
from projector.consumed import ConsumedRecord, DecodedRecord, UndecodableRecord
from projector.feed import Feed, FeedFailed
from projector.prediction import Prediction
from projector.status import Status

AT = datetime(2024, 5, 1, 12, 0, tzinfo=UTC)


class FakeMessage:
    def __init__(self, offset: int, value: bytes) -> None:
        self._offset = offset
        self._value = value

    def partition(self) -> int:
        return 0

    def offset(self) -> int:
        return self._offset

    def value(self) -> bytes:
        return self._value

    def key(self) -> bytes:
        return b"acc"

    def headers(self) -> None:
        return None

    def error(self) -> None:
        return None


class FakeConsumer:
    """Hands out `fetched` (lists of messages, one per poll), noting each poll's wait in `log`."""

    def __init__(self, log: list[str] | None = None, fetched: Sequence[list[Any]] = ()) -> None:
        self.committed: list[int] = []
        self.refuse: Exception | None = None
        """Raised by `commit` while set."""
        self.log = log if log is not None else []
        self.fetched = [list(messages) for messages in fetched]
        self._on_assign: Any = None
        self._on_revoke: Any = None

    def commit(self, offsets: Sequence[Any], asynchronous: bool) -> None:
        if self.refuse is not None:
            raise self.refuse
        self.committed.extend(tp.offset for tp in offsets)

    def assign(self, partitions: Sequence[Any]) -> None:
        pass

    # What Feed.run uses besides: a subscription assigns partition 0 at the first poll (as
    # librdkafka does inside poll), and closing revokes it.
    def subscribe(self, topics: list[str], on_assign: Any, on_revoke: Any, on_lost: Any) -> None:
        self._on_assign, self._on_revoke = on_assign, on_revoke

    def assignment(self) -> list[Any]:
        return [TopicPartition("events", 0)]

    def position(self, partitions: list[Any]) -> list[Any]:
        return [TopicPartition("events", 0, -1001)]

    def get_watermark_offsets(self, partition: Any, cached: bool) -> tuple[int, int]:
        return -1, -1

    def close(self) -> None:
        self.log.append("close")
        self._on_revoke(self, self.assignment())

    def poll(self, timeout: float) -> Any:
        if self._on_assign is not None:
            self._on_assign(self, self.assignment())
            self._on_assign = None
        self.log.append(f"poll {timeout}")
        if not self.fetched or not self.fetched[0]:
            return None
        return self.fetched[0].pop(0)

    def consume(self, most: int, timeout: float) -> list[Any]:
        self.log.append(f"consume {timeout}")
        return self.fetched.pop(0) if self.fetched else []


class LoggingCodec(EventCodec):
    def __init__(self, store: SchemaStore, log: list[str]) -> None:
        super().__init__(store)
        self.log = log

    def decode_batch(self, values: Sequence[bytes]) -> list[Any]:
        self.log.append(f"decode {len(values)}")
        return super().decode_batch(values)


class Recorder:
    """Applies batches through futures the test resolves, noting what happens when."""

    def __init__(self, log: list[str], fail_at: int | None = None) -> None:
        self.log = log
        self.in_flight: Future[BatchResult] | None = None
        self.batches: list[list[ConsumedRecord]] = []
        self.predictions: list[Prediction | None] = []
        self.fail_at = fail_at

    def apply(
        self, records: Sequence[ConsumedRecord], prediction: Prediction | None = None
    ) -> Future[BatchResult]:
        assert self.in_flight is None or self.in_flight.done(), "two batches in flight"
        self.batches.append(list(records))
        self.predictions.append(prediction)
        self.log.append(f"apply {len(records)}")
        future: Future[BatchResult] = _LoggedFuture(self.log, len(self.batches))
        if self.fail_at == len(self.batches):
            future.set_exception(RuntimeError("contradiction"))
        elif prediction is not None:
            writes = prediction.writes
            accounts = writes.projection.accounts
            future.set_result(BatchResult(len(records), 0, 0, writes.advanced, {}, accounts, True))
        else:
            last = max(r.offset for r in records)
            future.set_result(BatchResult(len(records), 0, 0, {0: last}))
        self.in_flight = future
        return future


class _LoggedFuture(Future[BatchResult]):
    def __init__(self, log: list[str], number: int) -> None:
        super().__init__()
        self._log = log
        self._number = number

    def result(self, timeout: float | None = None) -> BatchResult:
        self._log.append(f"wait {self._number}")
        return super().result(timeout)


def _feed(codec: EventCodec, recorder: Recorder, batch_max: int) -> Feed:
    return Feed(
        {},
        "events",
        codec,
        batch_max,
        apply_batch=recorder.apply,
        read_checkpoints=lambda partitions: {},
        status=Status("events"),
    )


def _messages(codec: EventCodec, count: int) -> list[Any]:
    events = [
        MoneyDeposited(
            event_id=f"e{n}",
            account_id="acc",
            version=n + 2,
            command_id=f"c{n}",
            command_fingerprint="f",
            occurred_at=AT,
            amount=1,
        )
        for n in range(count)
    ]
    values = [codec.encode(event) for event in events]
    values[3] = b"garbage"
    return [FakeMessage(offset, value) for offset, value in enumerate(values)]


@pytest.fixture
def log() -> list[str]:
    return []


@pytest.fixture
def codec(schema_store: SchemaStore, log: list[str]) -> EventCodec:
    codec = LoggingCodec(schema_store, log)
    codec.register()
    return codec


def test_batches_apply_in_order_each_decoded_while_the_previous_applies(
    codec: EventCodec, log: list[str]
) -> None:
    recorder = Recorder(log)
    consumer = FakeConsumer()
    messages = _messages(codec, 10)

    feed = _feed(codec, recorder, 4)
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
    feed._commit_to_kafka(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [8]
    feed._finish_in_flight()
    feed._commit_to_kafka(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [8, 10]


def test_live_records_fewer_than_a_batch_are_waited_for(codec: EventCodec, log: list[str]) -> None:
    feed = _feed(codec, Recorder(log), 4)

    assert feed._apply_in_order(_messages(codec, 4)[:3])

    assert log == ["decode 3", "apply 3", "wait 1"]
    assert feed._in_flight is None


def test_each_batch_is_projected_on_top_of_the_one_in_flight(
    codec: EventCodec, log: list[str]
) -> None:
    recorder = Recorder(log)
    opened = AccountOpened(
        event_id="e-open",
        account_id="acc",
        version=1,
        command_id="c-open",
        command_fingerprint="f",
        occurred_at=AT,
        currency="EUR",
        owner="Ada",
    )
    deposits = [message.value() for message in _messages(codec, 4)[:3]]
    messages = [FakeMessage(o, v) for o, v in enumerate([codec.encode(opened), *deposits])]

    assert _feed(codec, recorder, 2)._apply_in_order(messages)  # type: ignore[arg-type]

    first, second = recorder.predictions
    assert first is not None
    assert second is not None
    # Predicted before the first batch committed: from the account as that batch leaves it.
    assert (second.assumed, set(second.missing)) == ({0: 1}, set())
    assert second.writes.projection.accounts["acc"].account.balance == 3


def test_a_failed_batch_stops_every_later_one(codec: EventCodec, log: list[str]) -> None:
    recorder = Recorder(log, fail_at=2)
    consumer = FakeConsumer()
    feed = _feed(codec, recorder, 4)

    with pytest.raises(RuntimeError, match="contradiction"):
        feed._apply_in_order(_messages(codec, 10))

    assert len(recorder.batches) == 2
    feed._commit_to_kafka(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [4]


def test_when_stopped_only_the_batch_in_flight_is_finished(
    codec: EventCodec, log: list[str]
) -> None:
    recorder = Recorder(log)
    consumer = FakeConsumer()
    feed = _feed(codec, recorder, 4)
    applying = recorder.apply

    def apply_then_stop(
        records: Sequence[ConsumedRecord], prediction: Prediction | None = None
    ) -> Future[BatchResult]:
        feed.stop()
        return applying(records, prediction)

    recorder.apply = apply_then_stop  # type: ignore[method-assign]
    feed._apply_batch = apply_then_stop

    assert not feed._apply_in_order(_messages(codec, 10))

    assert len(recorder.batches) == 1
    feed._commit_to_kafka(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [4]


def _assign(feed: Feed, consumer: FakeConsumer, *partitions: int) -> None:
    feed._on_assign(consumer, [TopicPartition("events", p) for p in partitions])  # type: ignore[arg-type]


def test_a_catch_up_decodes_the_next_poll_without_waiting_for_the_batch_in_flight(
    codec: EventCodec, log: list[str]
) -> None:
    messages = _messages(codec, 8)
    consumer = FakeConsumer(log, [messages[6:8], []])
    feed = _feed(codec, Recorder(log), 2)
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
    messages = _messages(codec, 8)
    consumer = FakeConsumer(log, [messages[6:7], messages[7:8]])
    feed = _feed(codec, Recorder(log), 2)
    _assign(feed, consumer, 0)
    assert feed._apply_in_order(messages[4:6])
    log.clear()

    polled = feed._next_messages(consumer)  # type: ignore[arg-type]

    # Fewer than a batch: what arrived while the batch in flight committed goes with them.
    assert [m.offset() for m in polled] == [6, 7]
    assert log == ["poll 0", "consume 0", "wait 1", "consume 0"]


def test_records_of_partitions_no_longer_ours_are_dropped(
    codec: EventCodec, log: list[str]
) -> None:
    consumer = FakeConsumer(log, [_messages(codec, 4)[:2]])
    feed = _feed(codec, Recorder(log), 4)
    _assign(feed, consumer, 0)
    feed._on_revoke(consumer, [TopicPartition("events", 0)])  # type: ignore[arg-type]

    assert feed._next_messages(consumer) == []  # type: ignore[arg-type]


def test_a_revocation_finishes_the_batch_in_flight_before_the_partitions_go(
    codec: EventCodec, log: list[str]
) -> None:
    consumer = FakeConsumer(log)
    feed = _feed(codec, Recorder(log), 3)
    _assign(feed, consumer, 0)
    assert feed._apply_in_order(_messages(codec, 6))
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
    feed = _feed(codec, Recorder(log, fail_at=1), 2)
    _assign(feed, consumer, 0)
    assert feed._apply_in_order(_messages(codec, 4)[:2])

    feed._on_lost(consumer, [TopicPartition("events", 0)])  # type: ignore[arg-type]
    assert feed._in_flight is None

    with pytest.raises(RuntimeError, match="contradiction"):
        feed._next_messages(consumer)  # type: ignore[arg-type]
    assert feed._next_messages(consumer) == []  # type: ignore[arg-type]


def _sent_offsets_10_and_6(codec: EventCodec, log: list[str]) -> tuple[FakeConsumer, Feed]:
    """A feed owning partitions 0 and 1 that has sent their offsets 10 and 6 to Kafka."""
    consumer = FakeConsumer()
    feed = _feed(codec, Recorder(log), 4)
    _assign(feed, consumer, 0, 1)
    feed._uncommitted.update({0: 10, 1: 6})
    feed._commit_to_kafka(consumer)  # type: ignore[arg-type]
    return consumer, feed


def test_a_failed_offset_commit_is_sent_again_unless_overtaken(
    codec: EventCodec, log: list[str]
) -> None:
    consumer, feed = _sent_offsets_10_and_6(codec, log)
    failed = KafkaError(KafkaError.REBALANCE_IN_PROGRESS)

    feed._on_commit(failed, [TopicPartition("events", 0, 11), TopicPartition("events", 1, 7)])
    feed._commit_to_kafka(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [11, 7, 11, 7]

    # Partition 0 sent a later offset, partition 1 was revoked: neither failure is sent again.
    feed._uncommitted[0] = 20
    feed._commit_to_kafka(consumer)  # type: ignore[arg-type]
    feed._on_revoke(consumer, [TopicPartition("events", 1)])  # type: ignore[arg-type]
    consumer.committed.clear()
    feed._on_commit(failed, [TopicPartition("events", 0, 11), TopicPartition("events", 1, 7)])
    feed._commit_to_kafka(consumer)  # type: ignore[arg-type]
    assert consumer.committed == []


@dataclass
class PartitionCommitted:
    """A partition as `on_commit` gets it (a TopicPartition's `error` cannot be set)."""

    partition: int
    offset: int
    error: KafkaError | None = None


def test_offsets_whose_commit_failed_for_their_partition_or_at_once_are_sent_again(
    codec: EventCodec, log: list[str]
) -> None:
    consumer, feed = _sent_offsets_10_and_6(codec, log)

    # The commit as a whole succeeded; partition 1's did not.
    answers = [
        PartitionCommitted(0, 11),
        PartitionCommitted(1, 7, KafkaError(KafkaError.REBALANCE_IN_PROGRESS)),
    ]
    feed._on_commit(None, answers)  # type: ignore[arg-type]
    feed._commit_to_kafka(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [11, 7, 7]

    # The commit could not even be sent: its offsets go with the next one.
    consumer.refuse = KafkaException(KafkaError(KafkaError._STATE))
    feed._uncommitted[0] = 20
    feed._commit_to_kafka(consumer)  # type: ignore[arg-type]
    consumer.refuse = None
    feed._commit_to_kafka(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [11, 7, 7, 21]


class FatalError:
    def fatal(self) -> bool:
        return True

    def str(self) -> str:
        return "broker gone for good"


class FailedMessage(FakeMessage):
    def error(self) -> FatalError:  # type: ignore[override]
        return FatalError()


def _running_feed(
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
    feed, consumer, recorder = _running_feed(codec, log, [_messages(codec, 4)])
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
    fetched = [_messages(codec, 4), [FailedMessage(4, b""), FailedMessage(5, b"")]]
    feed, consumer, _recorder = _running_feed(codec, log, fetched)

    with pytest.raises(FeedFailed, match="broker gone for good"):
        feed.run()

    assert feed.stopping
    assert log[-5:] == ["apply 2", "poll 0", "consume 0", "wait 2", "close"]
    assert consumer.committed == [2, 4]
