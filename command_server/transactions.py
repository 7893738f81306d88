"""One transactional producer of the event store: what its errors mean, and how it recovers.

Only a fence means another instance took the shard over. Everything else that can go wrong in a
transaction (a broker that crashed or restarted, a timeout, an abort that fails because the
producer lost track of its transaction) leaves the shard ours: the producer is replaced by a
new one with the same transactional id, whose `init_transactions` fences our own old epoch and
settles the old transaction at the coordinator, and the writer goes on.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from enum import Enum
from typing import Any, TypeAlias

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer, TopicPartition

from command_server.snapshot_topic import SNAPSHOT_MAX_BYTES
from ledger.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)

INIT_TIMEOUT = 10.0
"""Seconds a (re-)initialisation may take before the producer counts as unusable for now."""
ABORT_TIMEOUT = 3.0
"""Seconds an abort may take; past it the producer is replaced (its replacement's
`init_transactions` settles the transaction), which waits for the coordinator just as well."""
COMMIT_TIMEOUT = 15.0
"""Seconds a commit is retried (librdkafka waits out the transaction timeout per attempt)."""

_FENCES = frozenset(
    {KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH}
)
_TIMEOUTS = frozenset(
    {
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TIMED_OUT_QUEUE,
        KafkaError.REQUEST_TIMED_OUT,
    }
)


Message_: TypeAlias = tuple[str, str, bytes, int]
"""A record of another topic written with events: (topic, key, value, partition)."""
Consumed: TypeAlias = tuple[list[TopicPartition], object]
"""Offsets processed (the next to read, per partition) and the group metadata they belong to:
committed in the transaction of what processing them produced."""


class Fenced(RuntimeError):
    """Another process took over this shard's transactional id: this one must stop writing."""


class AppendFailed(RuntimeError):
    """The append did not commit: nothing of it is in the log, or (AppendUnsettled) its fate
    is for the log to tell. Either way a retry with the same command ids is safe."""


class AppendUnsettled(AppendFailed):
    """The transaction failed in a way only its coordinator can settle: the producer was (or is
    to be) replaced, and the write model must read what the log holds before deciding again."""


class DeliveryUnconfirmed(RuntimeError):
    """A transaction committed but did not report where its records went: the write model can
    no longer tell what the log holds, so the writer must stop."""


class ErrorKind(Enum):
    FENCE = "fence"
    """Another instance holds the transactional id: stop (exit 3)."""
    ABORTABLE = "abortable"
    """The transaction must be aborted; the producer stays usable if the abort succeeds."""
    REINITIALISE = "reinitialise"
    """The producer cannot go on: replace it (same transactional id) and settle the transaction."""


def classify(err: KafkaError) -> ErrorKind:
    """What a transactional error means for the shard (only a real fence is a takeover)."""
    if err.code() in _FENCES:
        return ErrorKind.FENCE
    if err.code() in _TIMEOUTS:
        # A timed-out record may still be in flight: an abort marker written before it lands
        # would be wrong (KAFKA-14053), and the abort waits for a coordinator that may be on the
        # broker that just died. A replacement's `init_transactions` bumps the epoch instead, so
        # the broker refuses whatever of the old epoch still arrives.
        return ErrorKind.REINITIALISE
    if err.txn_requires_abort() and not err.fatal():
        return ErrorKind.ABORTABLE
    return ErrorKind.REINITIALISE


def new_producer(
    bootstrap: str, transactional_id: str, security: KafkaSecurity, compression: str = "none"
) -> Producer:
    """A transactional producer; `compression` is librdkafka's `compression.type`."""
    return Producer(
        {
            "compression.type": compression,
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
            # below it). A record in flight to a dead leader fails only when its message
            # timeout runs out, and the batch's callers wait that long: 6 s is about when the
            # controller has moved the leadership (broker.session.timeout.ms, 5 s in devstack),
            # so a batch waits little longer than the election (docs/reliability.md).
            "transaction.timeout.ms": 7_000,
            "message.timeout.ms": 6_000,
            # librdkafka asks again who the transaction coordinator is each time its connection
            # to the old one fails, and those attempts back off up to this (default 10 s): a
            # coordinator that moved to another broker was found up to 10 s late.
            "reconnect.backoff.max.ms": 1_000,
            # Snapshot chunks are larger than events (the snapshot topic allows them).
            "message.max.bytes": SNAPSHOT_MAX_BYTES + 65_536,
        }
    )


def group_metadata(bootstrap: str, group_id: str, security: KafkaSecurity) -> object:
    """What `send_offsets_to_transaction` needs to name consumer group `group_id`: built by a
    consumer that never connects (the metadata is plain bytes, usable once it is closed)."""
    consumer = Consumer(
        {**security.config(), "logger": log, "bootstrap.servers": bootstrap, "group.id": group_id}
    )
    try:
        metadata: object = consumer.consumer_group_metadata()
    finally:
        consumer.close()
    return metadata


def initialise(producer: Producer, timeout: float = INIT_TIMEOUT) -> KafkaError | None:
    """`init_transactions`: fences older epochs of the id and settles their open transaction."""
    try:
        producer.init_transactions(timeout)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        return error
    return None


def commit(producer: Producer, timeout: float = COMMIT_TIMEOUT) -> None:
    """Commit, retrying what librdkafka says may be retried, for at most `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            producer.commit_transaction(max(0.1, deadline - time.monotonic()))
            # Serve delivery reports that the commit's flush left queued.
            producer.poll(0)
            return
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if not error.retriable() or time.monotonic() >= deadline:
                raise
            log.warning("retrying transaction commit: %s", error.str())


def abort(producer: Producer, failure: KafkaError) -> None:
    """Abort after an abortable `failure`; raises Fenced, AppendFailed (aborted: nothing of it is
    in the log) or AppendUnsettled (the abort failed: the producer must be replaced)."""
    try:
        producer.abort_transaction(ABORT_TIMEOUT)
    except KafkaException as exc:
        error: KafkaError = exc.args[0]
        if classify(error) is ErrorKind.FENCE:
            raise Fenced(f"producer fenced during abort: {error.str()}") from exc
        raise AppendUnsettled(
            f"transaction failed ({failure.str()}) and its abort too ({error.str()})"
        ) from exc
    raise AppendFailed(f"transaction aborted: {failure.str()}")


def retire(producer: Producer) -> None:
    """Drop a producer that is being replaced, without waiting for a broker that may be gone."""
    producer.purge()
    threading.Thread(
        target=_close_retired, args=(producer,), name="retire-producer", daemon=True
    ).start()


def _close_retired(producer: Producer) -> None:
    try:
        producer.close()
    except KafkaException as exc:
        # Its replacement fenced it, or its broker is gone: either is why it was retired.
        log.info("a retired producer closed with: %s", exc.args[0].str())


class Deliveries:
    """The delivery reports of one transaction's records, through one callback for all of them
    (a closure per record cost more than the report itself), and where each record went.

    The producer is idempotent, so a partition holds a transaction's records in the order they
    were produced: the k-th lowest offset reported for a partition is that of the k-th record
    produced to it, in whatever order the reports arrive."""

    __slots__ = ("_reports", "failures")

    def __init__(self) -> None:
        self.failures: list[KafkaError] = []
        self._reports: list[tuple[int, int]] = []

    def report(self, err: KafkaError | None, msg: Any) -> None:
        if err is not None:
            self.failures.append(err)
        else:
            self._reports.append((msg.partition(), msg.offset() or 0))

    def offsets(self, partitions: Sequence[int]) -> list[int]:
        """The offset of each record produced, given the partition each was produced to, in
        produce order; -1 for a record whose report is missing (or failed)."""
        by_partition: dict[int, list[int]] = {}
        for partition, offset in self._reports:
            found = by_partition.get(partition)
            if found is None:
                by_partition[partition] = [offset]
            else:
                found.append(offset)
        ordered = {partition: iter(sorted(offsets)) for partition, offsets in by_partition.items()}
        missing = iter(())
        return [next(ordered.get(partition, missing), -1) for partition in partitions]


@dataclass(frozen=True, slots=True)
class Encoded:
    """A transaction's events as the records `begin_append` produces (`EventStore.encode`)."""

    records: list[tuple[bytes, bytes, int]]
    """(value, key, partition) of each event, in order."""
    keys: list[tuple[str, bytes | None]]
    """The key records sealing made for them: (account id, wrapped data key or None)."""


@dataclass(frozen=True, slots=True)
class Appending:
    """A transaction whose records are produced and not yet committed (`begin_append`)."""

    turn: int
    producer: Producer
    partitions: list[int]
    """Each record's partition, in the order produced."""
    deliveries: Deliveries


def send(
    producer: Producer,
    topic: str,
    value: bytes | None,
    key: bytes,
    partition: int,
    on_delivery: Callable[[KafkaError | None, Any], None] | None = None,
) -> None:
    while True:
        try:
            # Positional: the fifth is the delivery callback (`callback`, alias `on_delivery`).
            producer.produce(topic, value, key, partition, on_delivery)
            return
        except BufferError:
            producer.poll(0.01)
