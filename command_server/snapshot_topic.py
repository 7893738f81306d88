"""The compacted topic that holds the command server's snapshots, next to the event topic.

Unlike the event topic it may lose anything: a snapshot is a cache of a fold of the log, and
a partition without a usable one is simply replayed. Compaction keeps the latest value of each
key, which is all a restart reads.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from command_server.topic import Replication, create_missing_topic, describe_topic_config
from ledger.events.consuming import ReadToEnd, high_watermarks, read_to_end_config
from ledger.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)

SNAPSHOT_MAX_BYTES = 8 * 1024 * 1024
SNAPSHOT_COMPRESSION = "zstd"
"""How the snapshot producer compresses: its records (ids, fingerprints, offsets as 64-bit words,
tokens) shrink to about half, and the bytes a snapshot sends are what the event producer's
commits waited behind (docs/performance.md, "Snapshots compressed"). librdkafka compresses on
its own thread, outside the interpreter lock; the events stay uncompressed (small records,
latency first)."""
SNAPSHOT_TOPIC_CONFIG = {
    "cleanup.policy": "compact",
    "max.message.bytes": str(SNAPSHOT_MAX_BYTES),
    # Compact soon after superseded chunks pile up, so a restart reads little more than the
    # latest snapshot.
    "segment.bytes": str(64 * 1024 * 1024),
    "min.cleanable.dirty.ratio": "0.2",
    "delete.retention.ms": "3600000",
}


def snapshot_topic_name(event_topic: str) -> str:
    return f"{event_topic}.snapshots"


def ensure_snapshot_topic(
    admin: AdminClient, topic: str, replication: Replication | None = None, timeout: float = 30
) -> bool:
    """Create the snapshot topic if missing (replicated like the event topic, although it is a
    cache: losing it only slows a start); False (snapshots off) if it exists uncompacted."""
    replication = replication or Replication()
    config = {**SNAPSHOT_TOPIC_CONFIG, **replication.config()}
    create_missing_topic(admin, topic, 1, config, timeout, replication.factor)
    policy = describe_topic_config(admin, topic, timeout)["cleanup.policy"].value
    if policy != "compact":
        log.warning(
            "topic %s has cleanup.policy=%s, not compact: snapshots are off and every start "
            "replays the whole log. Fix: kafka-configs --alter --entity-type topics "
            "--entity-name %s --add-config cleanup.policy=compact",
            topic,
            policy,
            topic,
        )
        return False
    return True


def read_latest(
    bootstrap: str,
    topic: str,
    timeout: float = 120,
    security: KafkaSecurity = KafkaSecurity(),  # noqa: B008 (frozen, so safe to share)
) -> dict[str, bytes]:
    """The latest committed value of every live key of the (single-partition) topic."""
    consumer = Consumer(
        {
            **read_to_end_config(bootstrap, "ledger-command-snapshots", security=security),
            "logger": log,
            # A chunk may be as large as the topic allows.
            "max.partition.fetch.bytes": 2 * SNAPSHOT_MAX_BYTES,
        }
    )
    latest: dict[str, bytes] = {}
    try:
        reader = ReadToEnd(consumer, topic, {}, high_watermarks(consumer, topic, [0], timeout=30))
        for records in reader.batches(time.monotonic() + timeout, most=1000):
            for msg in records:
                key = (msg.key() or b"").decode("utf-8", "replace")
                value = msg.value()
                if value is None:
                    latest.pop(key, None)
                else:
                    latest[key] = value
        return latest
    finally:
        consumer.close()
