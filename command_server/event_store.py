"""Kafka as the event store: transactional appends by the one writer of a shard, and replay.

Every call here blocks. All of them are made in the writer process: on its main thread (the
start-up's replay, then the batch loop's appends), except the snapshot producer's store, which
background_snapshots.py drives from its own thread.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NoReturn

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer

from command_server.snapshot_topic import SNAPSHOT_MAX_BYTES
from ledger.events.codec import EventCodec, UndecodableEvent
from ledger.events.consuming import ReadToEnd, high_watermarks, read_to_end_config
from ledger.events.records import Event
from ledger.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)


class Fenced(RuntimeError):
    """Another process took over this shard's transactional id: this one must stop writing."""


class AppendFailed(RuntimeError):
    """The transaction was aborted: nothing of the batch reached the log; a retry is safe."""


def _is_fatal(err: KafkaError) -> bool:
    return bool(err.fatal()) or err.code() in (
        KafkaError._FENCED,
        KafkaError.PRODUCER_FENCED,
        KafkaError.INVALID_PRODUCER_EPOCH,
    )


class EventStore:
    """Appends go through the shard's transactional producers in turn, one transaction at a time.

    Why more than one: after a commit the broker still writes the transaction's markers, and a
    producer that starts its next transaction before that is done is told
    CONCURRENT_TRANSACTIONS and retried by librdkafka after a fixed 20 ms, which under load hit
    many transactions (docs/performance.md, "What changed in `command_server/`", item 5). The
    next transaction therefore goes to the other producer, whose previous transaction finished
    a whole batch ago. Appends still never overlap: each one begins producing only after the
    previous one committed, so the log holds them in the order they were decided. A new
    instance fences every one of the ids before it replays.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        transactional_ids: Sequence[str],
        codec: EventCodec,
        security: KafkaSecurity = KafkaSecurity(),  # noqa: B008 (frozen, so safe to share)
    ) -> None:
        if not transactional_ids:
            raise ValueError("an event store needs at least one transactional id")
        self._topic = topic
        self._codec = codec
        self._producers = [_producer(bootstrap, tid, security) for tid in transactional_ids]
        self._turn = 0
        """The producer that writes the next transaction."""
        self._bootstrap = bootstrap
        self._security = security
        self._in_transaction = False
        """Whether the producer whose turn it is has begun its transaction (`prepare`)."""

    def open(self, timeout: float = 60) -> None:
        """Fence any zombie holding our transactional ids and abort its open transactions."""
        open_together([self], timeout)

    def append(self, events: Sequence[tuple[Event, int]]) -> list[int]:
        """Write `(event, partition)` pairs in one transaction; return each event's offset."""
        offsets: list[int] = [-1] * len(events)
        failures: list[KafkaError] = []

        def delivered(index: int) -> Callable[[KafkaError | None, Message], None]:
            def report(err: KafkaError | None, msg: Message) -> None:
                if err is not None:
                    failures.append(err)
                else:
                    offsets[index] = msg.offset() or 0

            return report

        producer = self._take_turn()
        try:
            self._begin(producer)
            for index, (event, partition) in enumerate(events):
                value = self._codec.encode(event)
                key = event.account_id.encode()
                _send(producer, self._topic, value, key, partition, delivered(index))
            _commit(producer)
        except KafkaException as exc:
            _handle(producer, exc.args[0])
        if failures or -1 in offsets:
            # Unreachable if librdkafka keeps its promise that a commit means delivered.
            raise AppendFailed(f"delivery not confirmed after commit: {failures}")
        return offsets

    def publish(self, topic: str, records: Sequence[tuple[str, bytes | None]]) -> None:
        """Write keyed records (None: a tombstone) to `topic` in one transaction of their own."""
        producer = self._take_turn()
        try:
            self._begin(producer)
            for key, value in records:
                _send(producer, topic, value, key.encode(), 0)
            _commit(producer)
        except KafkaException as exc:
            _handle(producer, exc.args[0])

    def prepare(self) -> None:
        """Begin the next transaction ahead of the next batch, while there is nothing to do.

        Beginning is local to the producer (the broker hears of a transaction only with its
        first record), but it is a round trip to librdkafka's own thread that a waiting batch
        would otherwise pay. A failure here is left to the next `append`, which begins again
        and reports it.
        """
        if self._in_transaction:
            return
        try:
            self._producers[self._turn].begin_transaction()
        except KafkaException:
            return
        self._in_transaction = True

    def _take_turn(self) -> Producer:
        """The producer for the transaction about to be written; the next one goes to the next."""
        producer = self._producers[self._turn]
        self._turn = (self._turn + 1) % len(self._producers)
        return producer

    def _begin(self, producer: Producer) -> None:
        began, self._in_transaction = self._in_transaction, False
        # From here on the transaction either commits or is over (aborted or failed).
        if not began:
            producer.begin_transaction()

    def close(self) -> None:
        for producer in self._producers:
            producer.flush(5)

    def replay(
        self,
        partitions: Sequence[int],
        apply: Callable[[Event, int, int], None],
        start: Mapping[int, int] | None = None,
        timeout: float = 600,
    ) -> int:
        """Feed every committed event of `partitions` to `apply`, from `start` (offset per
        partition, default 0) up to the current end.

        Call it after `open()`: a transaction's markers are written after its commit returns,
        and until they are, a read_committed consumer's end of a partition (its last stable
        offset) stops short of it; fencing the shard's producers waits for their transactions
        to complete, so the end is then every transaction committed before.
        """
        consumer = Consumer(
            {
                **read_to_end_config(
                    self._bootstrap, "ledger-command-replay", security=self._security
                ),
                "logger": log,
            }
        )
        try:
            return self._replay(
                consumer, partitions, apply, start or {}, time.monotonic() + timeout
            )
        finally:
            consumer.close()

    def _replay(
        self,
        consumer: Consumer,
        partitions: Sequence[int],
        apply: Callable[[Event, int, int], None],
        start: Mapping[int, int],
        deadline: float,
    ) -> int:
        ends = high_watermarks(consumer, self._topic, partitions, timeout=30)
        reader = ReadToEnd(consumer, self._topic, start, ends)
        count = 0
        undecodable = 0
        for records in reader.batches(deadline):
            decoded = self._codec.decode_batch([m.value() or b"" for m in records])
            for msg, event in zip(records, decoded, strict=True):
                if isinstance(event, UndecodableEvent):
                    # The projector dead-letters such bytes; they carry no state we could fold.
                    undecodable += 1
                    log.error(
                        "skipping undecodable record at %s/%s: %s",
                        msg.partition(),
                        msg.offset(),
                        event,
                    )
                    continue
                apply(event, msg.partition() or 0, msg.offset() or 0)
                count += 1
        if undecodable:
            log.error("replay skipped %d undecodable records", undecodable)
        return count


def _producer(bootstrap: str, transactional_id: str, security: KafkaSecurity) -> Producer:
    return Producer(
        {
            **security.config(),
            "logger": log,
            "bootstrap.servers": bootstrap,
            "transactional.id": transactional_id,
            "enable.idempotence": True,
            "acks": "all",
            # The transaction commit flushes; lingering would only add latency.
            "linger.ms": 0,
            "partitioner": "murmur2",
            # A broker that dies with our transaction open holds the partitions until the
            # transaction times out: keep that short (librdkafka wants the message timeout
            # below it).
            "transaction.timeout.ms": 10_000,
            "message.timeout.ms": 9_000,
            # Snapshot chunks are larger than events (the snapshot topic allows them).
            "message.max.bytes": SNAPSHOT_MAX_BYTES + 65_536,
        }
    )


def _send(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes,
    partition: int,
    on_delivery: Any = None,
) -> None:
    while True:
        try:
            producer.produce(topic, value, key, partition=partition, on_delivery=on_delivery)
            return
        except BufferError:
            producer.poll(0.01)


def _commit(producer: Producer) -> None:
    while True:
        try:
            producer.commit_transaction()
            # Serve delivery reports that the commit's flush left queued.
            producer.poll(0)
            return
        except KafkaException as exc:
            if not exc.args[0].retriable():
                raise
            log.warning("retrying transaction commit: %s", exc.args[0].str())


def _handle(producer: Producer, err: KafkaError) -> NoReturn:
    if _is_fatal(err):
        raise Fenced(f"producer fenced or failed fatally: {err.str()}")
    if err.txn_requires_abort():
        try:
            producer.abort_transaction()
        except KafkaException as exc:
            if _is_fatal(exc.args[0]):
                raise Fenced(f"producer fenced during abort: {exc.args[0].str()}") from exc
            raise AppendFailed(f"abort failed: {exc.args[0].str()}") from exc
        raise AppendFailed(f"transaction aborted: {err.str()}")
    raise AppendFailed(f"append failed: {err.str()}")


def open_together(stores: Sequence[EventStore], timeout: float = 60) -> None:
    """`open` every store's producers at once: each fencing is a few round trips to the
    transaction coordinator, and a start waits for all of them."""
    producers = [producer for store in stores for producer in store._producers]
    with ThreadPoolExecutor(max_workers=len(producers)) as threads:
        outcomes = list(threads.map(lambda p: _init_transactions(p, timeout), producers))
    for error in outcomes:
        if error is not None:
            raise AppendFailed(f"could not initialise transactions: {error.str()}")


def _init_transactions(producer: Producer, timeout: float) -> KafkaError | None:
    try:
        producer.init_transactions(timeout)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        return error
    return None
