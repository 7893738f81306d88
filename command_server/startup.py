"""The writer's start-up: topics, schema, fencing, then the write model from snapshots and log.

Every call here blocks; it runs in the writer process before it takes its first batch.
"""

from __future__ import annotations

import gc
import logging
import time
from collections.abc import Callable
from itertools import islice
from typing import Any

from confluent_kafka.admin import AdminClient

from command_server.event_store import EventStore, UnreadableLog, open_together
from command_server.saga_start import (
    ensure_transfers_topic,
    fold_transfers,
    transfers_topic_exists,
)
from command_server.sealing import Sealing
from command_server.settings import Settings
from command_server.shards import Shard
from command_server.snapshot_topic import (
    SNAPSHOT_COMPRESSION,
    ensure_snapshot_topic,
    read_latest,
    snapshot_topic_name,
)
from command_server.snapshots import Snapshots, SnapshotTarget
from command_server.topic import (
    Replication,
    create_missing_topic,
    ensure_event_topic,
    partitions_changed,
    topic_id,
)
from command_server.write_model import WriteModel
from ledger.domain.decider import InconsistentEvent
from ledger.environment import SettingsError
from ledger.events.codec import EventCodec
from ledger.events.records import Event
from ledger.events.schema_store import ConfluentSchemaStore
from ledger.key_topic import KEY_TOPIC_CONFIG, key_topic_name, key_wrapper_from_file

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
    replication = Replication(settings.min_replication_factor, settings.min_insync_replicas)
    partitions = ensure_event_topic(admin, settings.topic, settings.partitions, replication)
    if partitions != settings.partitions:
        log.warning(
            "topic %s has %d partitions (LEDGER_PARTITIONS=%d); using the topic's count",
            settings.topic,
            partitions,
            settings.partitions,
        )
    if settings.shard_count > partitions:
        # Fencing covers every shard count up to the partition count (Settings.fencing_ids).
        raise SettingsError(
            f"LEDGER_SHARD_COUNT ({settings.shard_count}) is above the topic's {partitions} "
            "partitions: shards beyond them would own nothing"
        )
    sagas = settings.shard_count > 1 or transfers_topic_exists(admin, settings)
    if sagas:
        ensure_transfers_topic(admin, settings, partitions, replication)
    codec = EventCodec(ConfluentSchemaStore.connect(settings.registry))
    codec.register(settings.topic)
    key_topic = key_topic_name(settings.topic)
    wrapper = key_wrapper_from_file(settings.key_encryption_key_file)
    create_missing_topic(
        admin, key_topic, 1, {**KEY_TOPIC_CONFIG, **replication.config()}, 30, replication.factor
    )
    store = EventStore(
        settings.kafka_bootstrap,
        settings.topic,
        settings.transactional_ids,
        codec,
        settings.kafka_security,
        Sealing(key_topic, wrapper),
    )
    shard = Shard(settings.shard_index, settings.shard_count, partitions, sagas)
    stores = [store]
    snapshots = None
    topic = snapshot_topic_name(settings.topic)
    if settings.snapshot_every_events and ensure_snapshot_topic(admin, topic, replication):
        target = SnapshotTarget(
            topic,
            settings.topic,
            topic_id(admin, settings.topic),
            settings.snapshot_every_events,
            partitions,
            settings.snapshot_min_seconds,
        )
        # Its own producer: snapshots are written while batches go on (background_snapshots).
        snapshot_store = EventStore(
            settings.kafka_bootstrap,
            settings.topic,
            (settings.snapshot_transactional_id,),
            codec,
            settings.kafka_security,
            compression=SNAPSHOT_COMPRESSION,
        )
        snapshots = Snapshots(snapshot_store, target)
        stores.append(snapshot_store)
    ours = {
        tid
        for s in (settings.transactional_ids, (settings.snapshot_transactional_id,))
        for tid in s
    }
    others = [tid for tid in settings.fencing_ids(partitions) if tid not in ours]
    open_together(stores, fence_also=others)
    log.info("connected to Kafka and the registry in %.2fs", time.monotonic() - started)
    return store, shard, snapshots


class _Disagrees(Exception):
    """An event after a partition's snapshot does not follow from it."""

    def __init__(self, partition: int, offset: int, reason: InconsistentEvent) -> None:
        super().__init__(f"partition {partition} offset {offset}: {reason}")
        self.partition = partition


def rebuild(
    settings: Settings, store: EventStore, shard: Shard, snapshots: Snapshots | None
) -> tuple[WriteModel, int]:
    """The write model from the latest snapshots plus the events after them; (model, events
    replayed).

    A snapshot that an event after it contradicts (a version that does not follow, an account
    it lacks) is discarded and its partition replayed from offset 0; a contradiction in a
    partition replayed from 0 is the log's own, and stops the start (UnreadableLog).
    """
    started = time.monotonic()
    # Rebuilding allocates millions of long-lived objects and no garbage cycles: the cyclic
    # collector would only scan them again and again.
    gc.disable()
    latest = {}
    if snapshots is not None:
        latest = read_latest(
            settings.kafka_bootstrap,
            snapshot_topic_name(settings.topic),
            security=settings.kafka_security,
        )
    discarded: set[int] = set()
    while True:
        model = WriteModel(
            settings.dedupe_window, shard.owned_partitions, settings.dedupe_chunk_entries
        )
        start: dict[int, int] = {}
        if snapshots is not None:
            usable = {k: v for k, v in latest.items() if _key_partition(k) not in discarded}
            start = snapshots.restore(model, shard.owned_partitions, usable)
        restored = time.monotonic()
        try:
            replayed = store.replay(shard.owned_partitions, _checked(model, settings, start), start)
        except _Disagrees as exc:
            log.warning("snapshot discarded, partition replayed from offset 0: %s", exc)
            discarded.add(exc.partition)
            continue
        break
    del latest
    _check_placement(model, shard, settings.topic)
    if shard.sagas:
        fold_transfers(settings, model, shard)
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


def _key_partition(key: str) -> int | None:
    head, _, _ = key.partition("/")
    return int(head) if head.isdigit() else None


def _checked(
    model: WriteModel, settings: Settings, start: dict[int, int]
) -> Callable[[Event, int, int], None]:
    """`model.apply`, telling a snapshot that disagrees from a log that contradicts itself."""
    apply = model.apply

    def checked(event: Event, partition: int, offset: int) -> None:
        try:
            apply(event, partition, offset)
        except InconsistentEvent as exc:
            if start.get(partition, 0) > 0:
                raise _Disagrees(partition, offset, exc) from exc
            raise UnreadableLog(
                f"event at topic {settings.topic!r} partition {partition} offset {offset} "
                f"contradicts the events before it ({exc}); the write side does not guess "
                "past it"
            ) from exc

    return checked


_PLACEMENT_SAMPLE = 64


def _check_placement(model: WriteModel, shard: Shard, topic: str) -> None:
    """Refuse if accounts of the history live in other partitions than the topic's partition
    count now puts them: the count changed after they were written. A sample per partition
    suffices: after a change most accounts move."""
    for partition in shard.owned_partitions:
        for account_id in islice(model.account_ids.get(partition, ()), _PLACEMENT_SAMPLE):
            placed = shard.partition_of(account_id)
            if placed != partition:
                raise partitions_changed(
                    topic,
                    shard.partitions,
                    f"account {account_id!r} has its events in partition {partition}, but "
                    f"{shard.partitions} partitions place it in {placed}",
                )
