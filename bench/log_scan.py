"""Every committed record of a topic, read once from the start, values kept.

The catch-up baseline decodes these records itself, and every scenario that waits for the
projector needs each partition's last record offset (the high watermark is no use for that: in a
transactional topic the last offset is a commit marker, which never becomes a checkpoint).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, TopicPartition

from ledger.events.consuming import consume_ready


@dataclass
class Scanned:
    """(partition, offset, value) of every record, and each non-empty partition's last offset."""

    records: list[tuple[int, int, bytes]] = field(default_factory=list)
    last_offsets: dict[int, int] = field(default_factory=dict)
    count: int = 0


def scan(bootstrap: str, topic: str, *, keep_values: bool = True) -> Scanned:
    """Read `topic` from offset 0 to its end as a read_committed consumer (as the projector)."""
    consumer = Consumer(
        {
            "bootstrap.servers": bootstrap,
            "group.id": f"bench-scan-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
            "isolation.level": "read_committed",
            "enable.partition.eof": True,
            "auto.offset.reset": "earliest",
            "fetch.max.bytes": 64 * 1024 * 1024,
            "max.partition.fetch.bytes": 16 * 1024 * 1024,
        }
    )
    scanned = Scanned()
    try:
        metadata = consumer.list_topics(topic, timeout=10)
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in metadata.topics[topic].partitions
        }
        pending = {p for p, end in ends.items() if end > 0}
        consumer.assign([TopicPartition(topic, p, 0) for p in pending])
        while pending:
            for message in consume_ready(consumer, 10_000, 0.5):
                partition = message.partition() or 0
                offset = message.offset() or 0
                error = message.error()
                if error is not None:
                    # EOF at the end offset read before we started: the partition is done.
                    if error.code() == KafkaError._PARTITION_EOF and offset >= ends[partition]:
                        pending.discard(partition)
                    continue
                scanned.last_offsets[partition] = offset
                scanned.count += 1
                if keep_values:
                    scanned.records.append((partition, offset, message.value() or b""))
        return scanned
    finally:
        consumer.close()
