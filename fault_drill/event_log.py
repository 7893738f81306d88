"""Reading the whole event topic back, as the projector and the command server do.

Every partition from offset 0 to its end, `read_committed` (so aborted transactions are not
seen), decoded with the same codec (Confluent wire format, schemas from the registry).
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

from confluent_kafka import Consumer

from ledger.events.codec import EventCodec, UndecodableEvent
from ledger.events.consuming import (
    EndNotReached,
    ReadToEnd,
    high_watermarks,
    read_to_end_config,
)
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
    group_id = f"fault-drill-reader-{uuid.uuid4().hex[:8]}"
    return Consumer(read_to_end_config(bootstrap, group_id, isolation))


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
        reader = ReadToEnd(consumer, topic, {}, high_watermarks(consumer, topic, timeout=10))
        records: list[tuple[int, int, str, bytes]] = []
        try:
            for batch in reader.batches(deadline):
                records += (
                    (
                        m.partition() or 0,
                        m.offset() or 0,
                        (m.key() or b"").decode("utf-8", "replace"),
                        m.value() or b"",
                    )
                    for m in batch
                )
        except EndNotReached as error:
            raise LogUnreadable(
                f"could not read {topic} to its end within {deadline_s:.0f}s ({isolation}): "
                f"{error} (a transaction left open?)"
            ) from error
        records.sort(key=lambda r: (r[0], r[1]))
        return records
    finally:
        consumer.close()
