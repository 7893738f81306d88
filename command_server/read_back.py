"""Reading an owned partition's log back into the write model: at start-up, and after a
transaction whose fate only the log can tell."""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence

from confluent_kafka import Consumer

from ledger.events.codec import EventCodec, UndecodableEvent
from ledger.events.consuming import ReadToEnd, high_watermarks, read_to_end_config
from ledger.events.records import Event
from ledger.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)


class UnreadableLog(RuntimeError):
    """A record of an owned partition cannot be folded in: the writer must not guess past it."""


def read_back(
    bootstrap: str,
    security: KafkaSecurity,
    codec: EventCodec,
    topic: str,
    partitions: Sequence[int],
    apply: Callable[[Event, int, int], None],
    start: Mapping[int, int],
    deadline: float,
) -> int:
    """Feed every committed event of `partitions` from `start` to their current end to
    `apply`, through a consumer of its own; the number of events fed."""
    config = read_to_end_config(bootstrap, "ledger-command-replay", security=security)
    consumer = Consumer({**config, "logger": log})
    try:
        ends = high_watermarks(consumer, topic, partitions, timeout=30)
        return _fold(ReadToEnd(consumer, topic, start, ends), codec, topic, apply, deadline)
    finally:
        consumer.close()


def _fold(
    reader: ReadToEnd,
    codec: EventCodec,
    topic: str,
    apply: Callable[[Event, int, int], None],
    deadline: float,
) -> int:
    """Feed each event `reader` reads to `apply`, refusing a record that cannot be decoded."""
    count = 0
    for records in reader.batches(deadline):
        decoded = codec.decode_batch([m.value() or b"" for m in records])
        for msg, event in zip(records, decoded, strict=True):
            if isinstance(event, UndecodableEvent):
                # Skipping it would fold a state the log does not hold: a missing deposit,
                # a version gap. The projector may dead-letter such bytes; the writer stops.
                raise UnreadableLog(
                    f"record at topic {topic!r} partition {msg.partition()} offset "
                    f"{msg.offset()} cannot be decoded ({event}); the write side does not "
                    "guess past it: find out what wrote it (the registry's schemas, a "
                    "foreign producer) and repair the log or the registry before restarting"
                )
            apply(event, msg.partition() or 0, msg.offset() or 0)
            count += 1
    return count
