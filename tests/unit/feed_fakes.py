"""Fakes of the feed's collaborators (the consumer, the batch applier) and the records it is
fed, for the feed's unit tests."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import Future
from datetime import UTC, datetime
from typing import Any

from confluent_kafka import TopicPartition

from ledger.events.codec import EventCodec
from ledger.events.records import MoneyDeposited, event_id_for
from ledger.events.schema_store import SchemaStore
from projector.batch import BatchResult
from projector.consumed import ConsumedRecord
from projector.feed import Feed
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
    """Hands out `fetched` (lists of messages, one per poll), noting each poll's wait in `log`,
    and keeps the offsets committed to it."""

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
            result = BatchResult(len(records), 0, 0, writes.advanced, {}, accounts, writes)
            future.set_result(result)
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


def feed_of(codec: EventCodec, recorder: Recorder, batch_max: int) -> Feed:
    return Feed(
        {},
        "events",
        codec,
        batch_max,
        apply_batch=recorder.apply,
        read_checkpoints=lambda partitions: {},
        status=Status("events"),
    )


def deposits(codec: EventCodec, count: int) -> list[Any]:
    events = [
        MoneyDeposited(
            event_id=event_id_for("acc", n + 2),
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


def logging_codec(store: SchemaStore, log: list[str]) -> EventCodec:
    """A codec with the event schema registered that notes each batch it decodes in `log`."""
    codec = LoggingCodec(store, log)
    codec.register()
    return codec
