"""The local stack's components behave like the real thing the Ledger relies on."""

from __future__ import annotations

import json
import socket
import uuid
from pathlib import Path

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest
from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined, unused-ignore]
    AdminClient,
    NewTopic,
)
from confluent_kafka.schema_registry import Schema, SchemaRegistryClient
from confluent_kafka.schema_registry.common._httpx_compat import httpx
from confluent_kafka.schema_registry.error import SchemaRegistryError

from devstack import LocalStack, StackError, StackPorts
from devstack.postgres import Postgres
from tests.eventually import eventually

pytestmark = pytest.mark.integration

DEADLINE_S = 30.0


def _unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:12]}"


def _create_topic(stack: LocalStack) -> str:
    topic = _unique("devstack-test")
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    futures = admin.create_topics([NewTopic(topic, num_partitions=1, replication_factor=1)])
    futures[topic].result(timeout=DEADLINE_S)
    return topic


def _consume(stack: LocalStack, topic: str, *, isolation: str, until: bytes) -> list[bytes]:
    """Values of `topic` from the start up to and including the first one equal to `until`."""
    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": _unique("devstack-test"),
            "auto.offset.reset": "earliest",
            "enable.auto.commit": False,
            "isolation.level": isolation,
        }
    )
    values: list[bytes] = []

    def read_until() -> bool:
        message = consumer.poll(0.5)
        if message is not None and not message.error():
            values.append(message.value() or b"")
        return until in values

    try:
        consumer.subscribe([topic])
        eventually(
            read_until,
            timeout=DEADLINE_S,
            interval=0,
            message=lambda: f"{until!r} read from {topic}; got {values}",
        )
        return values
    finally:
        consumer.close()


def _transactional_producer(stack: LocalStack) -> Producer:
    producer = Producer(
        {"bootstrap.servers": stack.kafka_bootstrap, "transactional.id": _unique("devstack")}
    )
    producer.init_transactions(DEADLINE_S)
    return producer


def test_read_committed_sees_committed_transactions_and_never_aborted_ones(
    stack: LocalStack,
) -> None:
    topic = _create_topic(stack)
    producer = _transactional_producer(stack)

    producer.begin_transaction()
    for value in (b"committed-1", b"committed-2", b"committed-3"):
        producer.produce(topic, key=b"account-1", value=value)
    producer.commit_transaction(DEADLINE_S)

    producer.begin_transaction()
    for value in (b"aborted-1", b"aborted-2"):
        producer.produce(topic, key=b"account-1", value=value)
    producer.flush(DEADLINE_S)
    producer.abort_transaction(DEADLINE_S)

    # Read up to a record committed after the aborted ones, so that they had their chance.
    producer.begin_transaction()
    producer.produce(topic, key=b"account-1", value=b"committed-last")
    producer.commit_transaction(DEADLINE_S)

    committed = _consume(stack, topic, isolation="read_committed", until=b"committed-last")
    assert committed == [b"committed-1", b"committed-2", b"committed-3", b"committed-last"]
    # The aborted records did reach the log: only the isolation level hides them.
    everything = _consume(stack, topic, isolation="read_uncommitted", until=b"committed-last")
    assert b"aborted-1" in everything
    assert b"aborted-2" in everything


def test_schema_id_resolves_to_the_same_schema_after_a_registry_restart(
    stack: LocalStack,
) -> None:
    record_name = _unique("Opened").replace("-", "_")
    schema_str = json.dumps(
        {
            "type": "record",
            "name": record_name,
            "namespace": "ledger.test",
            "fields": [
                {"name": "account_id", "type": "string"},
                {"name": "amount_minor", "type": "long"},
            ],
        }
    )
    subject = _unique("devstack-test") + "-value"
    schema_id = SchemaRegistryClient({"url": stack.registry_url}).register_schema(
        subject, Schema(schema_str, "AVRO")
    )

    stack.registry.stop()
    assert not stack.registry.is_running()
    stack.registry.start()

    # A fresh client: nothing may come from the first client's cache.
    fresh = SchemaRegistryClient({"url": stack.registry_url})
    registered = fresh.get_schema(schema_id).schema_str
    assert registered is not None
    assert json.loads(registered) == json.loads(schema_str)
    assert fresh.get_latest_version(subject).schema_id == schema_id


async def test_asyncpg_writes_and_reads_back(stack: LocalStack) -> None:
    connection = await asyncpg.connect(stack.database_url)
    try:
        table = _unique("devstack_test").replace("-", "_")
        await connection.execute(f"CREATE TABLE {table} (id int PRIMARY KEY, amount numeric)")
        await connection.execute(f"INSERT INTO {table} VALUES (1, 12.34), (2, 0.01)")
        rows = await connection.fetch(f"SELECT id, amount::text FROM {table} ORDER BY id")
        assert [(row["id"], row["amount"]) for row in rows] == [(1, "12.34"), (2, "0.01")]
        await connection.execute(f"DROP TABLE {table}")
    finally:
        await connection.close()


@pytest.mark.parametrize("how", ["stop", "kill"])
def test_kafka_keeps_its_records_when_restarted_on_the_same_data(
    stack: LocalStack, how: str
) -> None:
    topic = _create_topic(stack)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap, "acks": "all"})
    for value in (b"one", b"two", b"three"):
        producer.produce(topic, key=b"k", value=value)
    assert producer.flush(DEADLINE_S) == 0

    if how == "stop":
        stack.kafka.stop()
    else:
        stack.kafka.kill()
    assert not stack.kafka.is_running()
    stack.kafka.start()

    assert _consume(stack, topic, isolation="read_committed", until=b"three") == [
        b"one",
        b"two",
        b"three",
    ]
    _wait_until_registry_registers(stack)


async def test_postgres_keeps_committed_rows_after_a_crash(stack: LocalStack) -> None:
    table = _unique("devstack_crash").replace("-", "_")
    connection = await asyncpg.connect(stack.database_url)
    try:
        await connection.execute(f"CREATE TABLE {table} (id int PRIMARY KEY)")
        await connection.execute(f"INSERT INTO {table} VALUES (1), (2), (3)")
    finally:
        await connection.close()

    stack.postgres.kill()
    assert not stack.postgres.is_running()
    stack.postgres.start()

    connection = await asyncpg.connect(stack.database_url)
    try:
        assert await connection.fetchval(f"SELECT count(*) FROM {table}") == 3
        await connection.execute(f"DROP TABLE {table}")
    finally:
        await connection.close()


def _wait_until_registry_registers(stack: LocalStack) -> None:
    """The registry's Kafka clients lost their broker: it must recover on its own, writes too
    (a registration is a record in its journal topic)."""
    client = SchemaRegistryClient({"url": stack.registry_url})
    schema = Schema(json.dumps({"type": "record", "name": "Probe", "fields": []}), "AVRO")

    def registers() -> bool:
        try:
            client.register_schema(_unique("devstack-test") + "-value", schema)
        except (SchemaRegistryError, httpx.HTTPError):
            return False
        return True

    eventually(
        registers,
        timeout=DEADLINE_S,
        interval=0.2,
        message="the registry to register schemas again after Kafka restarted",
    )


def test_environment_points_child_processes_at_the_stack(stack: LocalStack) -> None:
    assert stack.environment() == {
        "LEDGER_KAFKA_BOOTSTRAP_SERVERS": f"127.0.0.1:{stack.ports.kafka}",
        "LEDGER_SCHEMA_REGISTRY_URL": f"http://127.0.0.1:{stack.ports.registry}/apis/ccompat/v7",
        "LEDGER_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{stack.ports.postgres}/ledger",
    }


def test_a_taken_port_is_a_one_line_error(tmp_path: Path) -> None:
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(StackError, match=f"port {port} .* already in use") as error:
            Postgres(tmp_path, port).start()
    assert "\n" not in str(error.value)


def test_ports_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("KAFKA", "KAFKA_CONTROLLER", "KAFKA_SECURE", "REGISTRY", "POSTGRES"):
        monkeypatch.delenv(f"LEDGER_{name}_PORT", raising=False)
    monkeypatch.setenv("LEDGER_KAFKA_PORT", "19092")
    monkeypatch.setenv("LEDGER_POSTGRES_PORT", "15432")
    assert StackPorts.from_env() == StackPorts(kafka=19092, postgres=15432)
    monkeypatch.setenv("LEDGER_REGISTRY_PORT", "eighty")
    with pytest.raises(StackError, match="LEDGER_REGISTRY_PORT"):
        StackPorts.from_env()
