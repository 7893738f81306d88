"""The registry keeps its schemas in Kafka: Kafka alone is enough to decode the event log."""

from __future__ import annotations

import shutil
import struct
import uuid
from datetime import UTC, datetime

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest
from confluent_kafka import Consumer, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined, unused-ignore]
    AdminClient,
    ConfigResource,
    NewTopic,
)
from confluent_kafka.schema_registry import SchemaRegistryClient

from devstack import LocalStack
from devstack.registry import JOURNAL_TOPIC, SNAPSHOTS_TOPIC
from ledger.domain.commands import Deposit, OpenAccount
from ledger.domain.decider import decide, evolve
from ledger.events.codec import EventCodec
from ledger.events.records import Event
from ledger.events.schema_store import ConfluentSchemaStore
from tests.eventually import eventually

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


def _events(account_id: str) -> list[Event]:
    now = datetime.now(UTC)
    (opened,) = decide(OpenAccount(f"open-{account_id}", account_id, "EUR", "o"), {}, now)
    state = evolve(None, opened)
    deposit = Deposit(f"dep-{account_id}", account_id, "12.34")
    (deposited,) = decide(deposit, {account_id: state}, now)
    return [opened, deposited]


def _codec(stack: LocalStack) -> EventCodec:
    """A codec over a new registry client: nothing comes from an earlier client's cache."""
    return EventCodec(ConfluentSchemaStore(SchemaRegistryClient({"url": stack.registry_url})))


def _read_values(stack: LocalStack, topic: str, count: int) -> list[bytes]:
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"schemas-in-kafka-{uuid.uuid4().hex[:8]}",
            "enable.auto.commit": False,
        }
    )
    consumer.assign([TopicPartition(topic, 0, 0)])
    values: list[bytes] = []

    def read_all() -> bool:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            values.append(message.value() or b"")
        return len(values) >= count

    try:
        eventually(read_all, timeout=DEADLINE_S, interval=0, message=f"{count} records")
    finally:
        consumer.close()
    return values


async def test_events_still_decode_after_the_registry_loses_all_its_own_state(
    stack: LocalStack,
) -> None:
    topic = f"schemas-in-kafka-{uuid.uuid4().hex[:12]}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1)])[topic].result(timeout=DEADLINE_S)
    writer = _codec(stack)
    schema_id = writer.register(topic)
    events = _events(f"acc-{uuid.uuid4().hex[:8]}")
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all"})
    for event in events:
        producer.produce(topic, key=writer.key_of(event), value=writer.encode(event))
    assert producer.flush(DEADLINE_S) == 0

    # Everything the registry has of its own: its process and its directory. (It has no
    # database: the stack's PostgreSQL holds only the read model.)
    stack.registry.stop()
    shutil.rmtree(stack.registry.data_dir)
    connection = await asyncpg.connect(stack.database_url)
    try:
        databases = await connection.fetch("SELECT datname FROM pg_database")
    finally:
        await connection.close()
    assert "registry" not in {row["datname"] for row in databases}
    stack.registry.start()

    values = _read_values(stack, topic, len(events))
    assert [struct.unpack(">bI", value[:5])[1] for value in values] == [schema_id] * len(events)
    # Decoded before anyone registers anything again: the schema came back from the journal.
    assert [_codec(stack).decode(value) for value in values] == events
    # And registering it again finds it under the id the events carry.
    assert _codec(stack).register(topic) == schema_id


def test_the_registry_journal_is_one_partition_that_never_deletes_a_record(
    stack: LocalStack,
) -> None:
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    topics = admin.list_topics(timeout=DEADLINE_S).topics
    resources = [ConfigResource("topic", name) for name in (JOURNAL_TOPIC, SNAPSHOTS_TOPIC)]
    for resource, future in admin.describe_configs(resources).items():
        config = future.result(timeout=DEADLINE_S)
        assert len(topics[resource.name].partitions) == 1, resource.name
        never_deleted = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}
        assert {name: config[name].value for name in never_deleted} == never_deleted, resource.name
