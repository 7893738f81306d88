"""The event store's topic: created with infinite retention, refused if it could lose events."""

from __future__ import annotations

import time
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


def ensure_event_topic(admin: AdminClient, topic: str, partitions: int, timeout: float = 30) -> int:
    """Create `topic` if missing, verify its retention, and return its partition count."""
    create_missing_topic(admin, topic, partitions, REQUIRED_CONFIG, timeout)
    verify_retention(admin, topic, timeout)
    metadata = admin.list_topics(topic=topic, timeout=timeout)
    return len(metadata.topics[topic].partitions)


def create_missing_topic(
    admin: AdminClient, topic: str, partitions: int, config: dict[str, str], timeout: float
) -> None:
    """Create `topic` with `config` unless it exists (its settings are the caller's to check)."""
    if topic in admin.list_topics(timeout=timeout).topics:
        return
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=partitions, config=dict(config))], request_timeout=timeout
    )
    try:
        futures[topic].result(timeout)
    except KafkaException as exc:
        # Another instance may have created it between our look and our create.
        if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
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


def verify_retention(admin: AdminClient, topic: str, timeout: float = 30) -> None:
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


def topic_id(admin: AdminClient, topic: str, timeout: float = 30) -> str:
    """The topic's unique id: a topic deleted and created again under its name gets a new one."""
    description = admin.describe_topics(TopicCollection([topic]), request_timeout=timeout)[topic]
    return str(description.result(timeout).topic_id)
