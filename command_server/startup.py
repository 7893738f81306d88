"""The writer's start-up: topics, schema, fencing, then the write model from snapshots and log.

Every call here blocks; it runs in the writer process before it takes its first batch.
"""

from __future__ import annotations

import gc
import logging
import time
from typing import Any

from confluent_kafka.admin import AdminClient

from command_server.event_store import EventStore, open_together
from command_server.settings import Settings
from command_server.shards import Shard
from command_server.snapshot_topic import ensure_snapshot_topic, read_latest, snapshot_topic_name
from command_server.snapshots import Snapshots, SnapshotTarget
from command_server.topic import ensure_event_topic, topic_id
from command_server.write_model import WriteModel
from ledger.events.codec import EventCodec
from ledger.events.schema_store import ConfluentSchemaStore

log = logging.getLogger(__name__)


def connect(settings: Settings) -> tuple[EventStore, Shard, Snapshots | None]:
    """Blocking start-up: topics, schema, and fencing of any zombie of our shard."""
    started = time.monotonic()
    admin_config: dict[str, Any] = {
        **settings.kafka_security.config(),
        "bootstrap.servers": settings.kafka_bootstrap,
        "logger": log,
    }
    admin = AdminClient(admin_config)
    partitions = ensure_event_topic(admin, settings.topic, settings.partitions)
    if partitions != settings.partitions:
        log.warning(
            "topic %s has %d partitions (LEDGER_PARTITIONS=%d); using the topic's count",
            settings.topic,
            partitions,
            settings.partitions,
        )
    codec = EventCodec(ConfluentSchemaStore.connect(settings.registry))
    codec.register(settings.topic)
    store = EventStore(
        settings.kafka_bootstrap,
        settings.topic,
        settings.transactional_ids,
        codec,
        settings.kafka_security,
    )
    shard = Shard(settings.shard_index, settings.shard_count, partitions)
    stores = [store]
    snapshots = None
    topic = snapshot_topic_name(settings.topic)
    if settings.snapshot_every_events and ensure_snapshot_topic(admin, topic):
        target = SnapshotTarget(
            topic, settings.topic, topic_id(admin, settings.topic), settings.snapshot_every_events
        )
        # Its own producer: snapshots are written while batches go on (background_snapshots).
        snapshot_store = EventStore(
            settings.kafka_bootstrap,
            settings.topic,
            (settings.snapshot_transactional_id,),
            codec,
            settings.kafka_security,
        )
        snapshots = Snapshots(snapshot_store, target)
        stores.append(snapshot_store)
    open_together(stores)
    log.info("connected to Kafka and the registry in %.2fs", time.monotonic() - started)
    return store, shard, snapshots


def rebuild(
    settings: Settings, store: EventStore, shard: Shard, snapshots: Snapshots | None
) -> tuple[WriteModel, int]:
    """The write model from the latest snapshots plus the events after them; (model, events
    replayed)."""
    started = time.monotonic()
    model = WriteModel(settings.dedupe_window, shard.owned_partitions)
    # Rebuilding allocates millions of long-lived objects and no garbage cycles: the cyclic
    # collector would only scan them again and again.
    gc.disable()
    start: dict[int, int] = {}
    if snapshots is not None:
        latest = read_latest(
            settings.kafka_bootstrap,
            snapshot_topic_name(settings.topic),
            security=settings.kafka_security,
        )
        start = snapshots.restore(model, shard.owned_partitions, latest)
        del latest
    restored = time.monotonic()
    replayed = store.replay(shard.owned_partitions, model.apply, start)
    gc.enable()
    # The rebuilt state lives as long as the process: keep the collector off it for good.
    gc.collect()
    gc.freeze()
    if start:
        log.info(
            "restored partitions from snapshots in %.2fs, replayed from offsets %s in %.2fs",
            restored - started,
            dict(sorted(start.items())),
            time.monotonic() - restored,
        )
    return model, replayed
