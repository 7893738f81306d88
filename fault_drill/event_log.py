"""Reading the whole event topic back, as the projector and the command server do.

Every partition from offset 0 to its end, `read_committed` (so aborted transactions are not
seen), decoded with the same codec (Confluent wire format, schemas from the registry).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ledger.events.codec import EventCodec, UndecodableEvent
from ledger.events.records import Event
from ledger.events.schema_store import ConfluentSchemaStore


class LogUnreadable(RuntimeError):
    """The end of the log could not be reached read_committed in time."""


@dataclass(frozen=True, slots=True)
class LogRecord:
    partition: int
    offset: int
    key: str
    event: Event | None
    error: str | None
    """Why the record could not be decoded (then `event` is None)."""


def _consumer(bootstrap: str, isolation: str) -> Consumer:
    return Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"fault-drill-reader-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": isolation,
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }
    )


def read_log(
    bootstrap: str, registry_url: str, topic: str, *, deadline_s: float = 120
) -> list[LogRecord]:
    """Every committed record of `topic`, each partition in offset order."""
    store = ConfluentSchemaStore.connect(registry_url)
    codec = EventCodec(store)
    try:
        return [
            LogRecord(
                partition,
                offset,
                key,
                *_decode(codec, value),
            )
            for partition, offset, key, value in _read(
                bootstrap, topic, "read_committed", deadline_s
            )
        ]
    finally:
        store.close()


def count_records(bootstrap: str, topic: str, *, deadline_s: float = 60) -> int:
    """How many records `topic` holds (0 if it does not exist): for the dead-letter topic."""
    consumer = _consumer(bootstrap, "read_uncommitted")
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            return 0
    finally:
        consumer.close()
    return len(_read(bootstrap, topic, "read_uncommitted", deadline_s))


def _decode(codec: EventCodec, value: bytes) -> tuple[Event | None, str | None]:
    try:
        return codec.decode(value), None
    except UndecodableEvent as error:
        return None, str(error)


def _read(
    bootstrap: str, topic: str, isolation: str, deadline_s: float
) -> list[tuple[int, int, str, bytes]]:
    consumer = _consumer(bootstrap, isolation)
    deadline = time.monotonic() + deadline_s
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        partitions = sorted(metadata.topics[topic].partitions)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in partitions
        }
        pending = {p for p, end in ends.items() if end > 0}
        reached = dict.fromkeys(pending, 0)
        consumer.assign([TopicPartition(topic, p, 0) for p in sorted(pending)])
        records: list[tuple[int, int, str, bytes]] = []
        while pending:
            if time.monotonic() > deadline:
                raise LogUnreadable(
                    f"could not read {topic} to its end within {deadline_s:.0f}s "
                    f"({isolation}): partitions {sorted(pending)} stopped at "
                    f"{ {p: reached[p] for p in sorted(pending)} }, their high watermarks are "
                    f"{ {p: ends[p] for p in sorted(pending)} } (a transaction left open?)"
                )
            for message in consumer.consume(num_messages=10_000, timeout=0.5):
                error = message.error()
                partition = message.partition() or 0
                offset = message.offset() or 0
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    reached[partition] = offset
                    # The EOF position is past any trailing transaction marker once all is read.
                    if offset >= ends[partition]:
                        pending.discard(partition)
                    continue
                key = message.key() or b""
                records.append(
                    (partition, offset, key.decode("utf-8", "replace"), message.value() or b"")
                )
        records.sort(key=lambda r: (r[0], r[1]))
        return records
    finally:
        consumer.close()
