"""The event store's topic: created with infinite retention and the configured replication,
refused if it could lose events (retention, replication) or if its partition count changed."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from confluent_kafka import KafkaError, KafkaException, TopicCollection
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

# Kafka is the only source of truth: nothing may ever be deleted or compacted away.
REQUIRED_CONFIG = {
    "retention.ms": "-1",
    "retention.bytes": "-1",
    "cleanup.policy": "delete",
}


class UnsafeTopic(RuntimeError):
    """The topic exists with settings that could lose events; the server must not start."""


@dataclass(frozen=True, slots=True)
class Replication:
    """The least replication a topic may have; topics are created with exactly this."""

    factor: int = 1
    min_insync: int = 1

    def config(self) -> dict[str, str]:
        return {"min.insync.replicas": str(self.min_insync)}


def ensure_event_topic(
    admin: AdminClient,
    topic: str,
    partitions: int,
    replication: Replication | None = None,
    timeout: float = 30,
) -> int:
    """Create `topic` if missing, verify its retention and replication, and return its
    partition count."""
    replication = replication or Replication()
    config = {**REQUIRED_CONFIG, **replication.config()}
    create_missing_topic(admin, topic, partitions, config, timeout, replication.factor)
    configs = verify_retention(admin, topic, timeout)
    metadata = admin.list_topics(topic=topic, timeout=timeout).topics[topic]
    factor = min((len(p.replicas) for p in metadata.partitions.values()), default=0)
    verify_replication(topic, factor, int(configs["min.insync.replicas"].value), replication)
    return len(metadata.partitions)


def verify_replication(topic: str, factor: int, min_insync: int, wanted: Replication) -> None:
    """Refuse a topic replicated less than `wanted` (min.insync.replicas as the broker applies
    it: the topic's own value or the broker's default)."""
    short = []
    if factor < wanted.factor:
        short.append(
            f"replication factor {factor} < LEDGER_MIN_REPLICATION_FACTOR={wanted.factor} "
            "(add replicas with kafka-reassign-partitions)"
        )
    if min_insync < wanted.min_insync:
        short.append(
            f"min.insync.replicas={min_insync} < LEDGER_MIN_INSYNC_REPLICAS={wanted.min_insync} "
            f"(kafka-configs --alter --entity-type topics --entity-name {topic} "
            f"--add-config min.insync.replicas={wanted.min_insync})"
        )
    if short:
        raise UnsafeTopic(
            f"topic {topic!r} is replicated less than configured, so an acknowledged write "
            f"could be lost with one broker: {'; '.join(short)}. Fix the topic, or lower "
            "the minimums only for a test stack"
        )


def create_missing_topic(
    admin: AdminClient,
    topic: str,
    partitions: int,
    config: dict[str, str],
    timeout: float,
    replication_factor: int = -1,
) -> None:
    """Create `topic` with `config` unless it exists (its settings are the caller's to check);
    replication_factor -1: the broker's default."""
    if topic in admin.list_topics(timeout=timeout).topics:
        return
    new = NewTopic(
        topic,
        num_partitions=partitions,
        replication_factor=replication_factor,
        config=dict(config),
    )
    futures = admin.create_topics([new], request_timeout=timeout)
    try:
        futures[topic].result(timeout)
    except KafkaException as exc:
        code = exc.args[0].code()
        if code == KafkaError.INVALID_REPLICATION_FACTOR:
            raise UnsafeTopic(
                f"cannot create topic {topic!r} with {replication_factor} replicas "
                f"(LEDGER_MIN_REPLICATION_FACTOR): {exc.args[0].str()}"
            ) from exc
        # Another instance may have created it between our look and our create.
        if code != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


def describe_topic_config(admin: AdminClient, topic: str, timeout: float) -> dict[str, Any]:
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    deadline = time.monotonic() + timeout
    while True:
        try:
            configs: dict[str, Any] = admin.describe_configs([resource], request_timeout=timeout)[
                resource
            ].result(timeout)
            return configs
        except KafkaException as exc:
            # Right after creation the broker may not know the topic yet: metadata propagates.
            retriable = exc.args[0].code() == KafkaError.UNKNOWN_TOPIC_OR_PART
            if not retriable or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def verify_retention(admin: AdminClient, topic: str, timeout: float = 30) -> dict[str, Any]:
    """Refuse a topic that could delete or compact events away; returns its configuration."""
    configs = describe_topic_config(admin, topic, timeout)
    wrong = {
        name: configs[name].value
        for name, wanted in REQUIRED_CONFIG.items()
        if configs[name].value != wanted
    }
    if wrong:
        found = ", ".join(f"{name}={value}" for name, value in sorted(wrong.items()))
        needed = ", ".join(f"{name}={value}" for name, value in REQUIRED_CONFIG.items())
        raise UnsafeTopic(
            f"topic {topic!r} could lose events ({found}); the event store needs {needed}. "
            f"Fix it with kafka-configs --alter --entity-type topics --entity-name {topic} "
            f"--add-config {needed.replace(', ', ',')}"
        )
    return configs


def topic_id(admin: AdminClient, topic: str, timeout: float = 30) -> str:
    """The topic's unique id: a topic deleted and created again under its name gets a new one."""
    description = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic]
    return str(description.result(timeout).topic_id)


def partitions_changed(topic: str, partitions: int, evidence: str) -> UnsafeTopic:
    """The refusal for a topic whose partition count is not the one its history was written
    with: accounts would move to other partitions, and their events out of order."""
    return UnsafeTopic(
        f"topic {topic!r} now has {partitions} partitions, but its events were written with "
        f"another count ({evidence}). An account's events must stay in one partition, so the "
        "command server does not serve on it. Kafka cannot remove partitions: either move the "
        "history to a new topic with the count you want (copy every event in order, keyed by "
        "account, letting the murmur2 partitioner place it), set LEDGER_TOPIC to that topic and "
        "rebuild the read model (python -m projector rebuild), or delete the topic and start "
        "afresh if its history is disposable"
    )
