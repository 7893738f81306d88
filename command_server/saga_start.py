"""The saga's part of a shard's start (docs/design.md, decision 13): the transfers topic, and
what the write model learns from it before the shard serves.

Which cross-shard transfers still have money in flight is a fold of the event log (TransferSent
adds, TransferRefunded removes), which `rebuild` does, and of the Credited notices this shard
already processed: those up to the offsets its transactions committed for the saga's group.
They are read here, after fencing (a zombie's open transaction, offsets included, is aborted
by then), and the inbox then goes on from those offsets.
"""

from __future__ import annotations

import logging
import time

from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient

from command_server.event_store import UnreadableLog
from command_server.saga_messages import (
    Credited,
    UnreadableSagaMessage,
    decode,
    saga_group,
    transfers_topic_name,
)
from command_server.settings import Settings
from command_server.shards import Shard
from command_server.topic import Replication, ensure_event_topic, partitions_changed
from command_server.transfers_in_flight import COMPLETED
from command_server.write_model import WriteModel
from command_server.writer.saga_inbox import committed_offsets, saga_consumer_config
from ledger.events.consuming import ReadToEnd, read_to_end_config

log = logging.getLogger(__name__)


def ensure_transfers_topic(
    admin: AdminClient, settings: Settings, partitions: int, replication: Replication
) -> None:
    """Create the transfers topic like the event topic (kept forever: a request must wait for
    a shard however long it is down), with its partition count (a message's key must land in
    the partition of its account's shard)."""
    topic = transfers_topic_name(settings.topic)
    found = ensure_event_topic(admin, topic, partitions, replication)
    if found != partitions:
        raise partitions_changed(
            topic, partitions, f"it has {found} partitions, the event topic {partitions}"
        )


def transfers_topic_exists(admin: AdminClient, settings: Settings, timeout: float = 30) -> bool:
    # Every topic's metadata: asking for this one alone could create it (auto-creation).
    return transfers_topic_name(settings.topic) in admin.list_topics(timeout=timeout).topics


def fold_transfers(
    settings: Settings, model: WriteModel, shard: Shard, timeout: float = 600
) -> int:
    """Fold into `model` the Credited notices this shard processed before; set where its inbox
    starts. Returns how many messages were read."""
    topic = transfers_topic_name(settings.topic)
    partitions = shard.owned_partitions
    offsets = Consumer(
        saga_consumer_config(
            settings.kafka_bootstrap, saga_group(settings.topic), settings.kafka_security
        )
    )
    try:
        ends = committed_offsets(offsets, topic, partitions)
    finally:
        offsets.close()
    consumer = Consumer(
        read_to_end_config(
            settings.kafka_bootstrap, "ledger-command-saga-replay", security=settings.kafka_security
        )
    )
    read = 0
    try:
        # From where each partition's snapshot left its transfers in flight (0: no snapshot).
        starts = {p: model.saga_positions.get(p, 0) for p in partitions}
        reader = ReadToEnd(consumer, topic, starts, ends)
        for records in reader.batches(time.monotonic() + timeout):
            for record in records:
                partition, offset = record.partition() or 0, record.offset() or 0
                if not starts[partition] <= offset < ends[partition]:
                    continue
                read += 1
                try:
                    message = decode(record.value() or b"")
                except UnreadableSagaMessage as exc:
                    raise UnreadableLog(
                        f"record at topic {topic!r} partition {partition} offset {offset} "
                        f"cannot be read ({exc}); the write side does not guess past it"
                    ) from exc
                if isinstance(message, Credited):
                    model.transfers.settle(message.transfer_id, COMPLETED)
    finally:
        consumer.close()
    model.saga_positions = dict(ends)
    log.info(
        "%d transfers in flight after reading %d saga messages up to %s",
        len(model.transfers.sent),
        read,
        ends,
    )
    return read
