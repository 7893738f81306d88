"""Every committed record of a topic, read once from the start, values kept.

The catch-up baseline decodes these records itself, and every scenario that waits for the
projector needs each partition's last record offset (the high watermark is no use for that: in a
transactional topic the last offset is a commit marker, which never becomes a checkpoint).
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field

from confluent_kafka import Consumer

from ledger.events.consuming import ReadToEnd, high_watermarks, read_to_end_config


@dataclass
class Scanned:
    """(partition, offset, value) of every record, and each non-empty partition's last offset."""

    records: list[tuple[int, int, bytes]] = field(default_factory=list)
    last_offsets: dict[int, int] = field(default_factory=dict)
    count: int = 0


def scan(bootstrap: str, topic: str, *, keep_values: bool = True) -> Scanned:
    """Read `topic` from offset 0 to its end as a read_committed consumer (as the projector)."""
    consumer = Consumer(read_to_end_config(bootstrap, f"bench-scan-{uuid.uuid4().hex[:8]}"))
    scanned = Scanned()
    try:
        reader = ReadToEnd(consumer, topic, {}, high_watermarks(consumer, topic, timeout=10))
        # No deadline: a benchmark that cannot read its log has nothing to report anyway.
        for batch in reader.batches(deadline=math.inf):
            for message in batch:
                partition = message.partition() or 0
                offset = message.offset() or 0
                scanned.last_offsets[partition] = offset
                scanned.count += 1
                if keep_values:
                    scanned.records.append((partition, offset, message.value() or b""))
        return scanned
    finally:
        consumer.close()
