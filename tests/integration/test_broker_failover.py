"""The write side on three replicated brokers: under load, SIGKILL the broker that leads most
of the topic's partitions, later another one (the first back by then, so two stay up). Nothing
acknowledged is lost, nothing is applied twice, and writes go on while a broker is down."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections import Counter, defaultdict

import pytest
from confluent_kafka import Consumer
from confluent_kafka.schema_registry import SchemaRegistryClient

from devstack.kafka_cluster import KafkaCluster
from devstack.ledger_services import LedgerService
from devstack.stack import LocalStack
from ledger.domain.decider import replay
from ledger.events.codec import EventCodec
from ledger.events.consuming import ReadToEnd, high_watermarks, read_to_end_config
from ledger.events.records import Event
from ledger.events.schema_store import ConfluentSchemaStore
from tests.eventually import eventually_async
from tests.integration.failover_load import Load

pytestmark = pytest.mark.integration

# Acknowledgements after a kill that show writes go on without the killed broker.
RESUMED_ACKS = 20
EVENTS_OF = {"open": 1, "deposit": 1, "withdraw": 1, "transfer": 2}


async def test_killing_brokers_under_load_loses_nothing_and_applies_nothing_twice(
    stack: LocalStack, kafka_cluster: KafkaCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    cluster = kafka_cluster
    began = time.monotonic()
    topic = f"failover_{uuid.uuid4().hex[:12]}"
    service = LedgerService.command_server(
        stack,
        tmp_path_factory.mktemp("command-server"),
        topic=topic,
        extra_env={
            "LEDGER_KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap_servers,
            "LEDGER_MIN_REPLICATION_FACTOR": "3",
            "LEDGER_MIN_INSYNC_REPLICAS": "2",
        },
    )
    service.start()  # creates the topic: 3 replicas, min.insync.replicas=2
    load = Load(service.address)
    try:
        running = asyncio.create_task(load.run())
        await eventually_async(
            lambda: _true(len(load.acks) >= RESUMED_ACKS), timeout=30, message="load flowing"
        )
        first = cluster.busiest_leader(topic)
        first_stall = await _kill_and_restart(cluster, first, load, topic)
        second = _busiest_other(cluster, topic, first)
        second_stall = await _kill_and_restart(cluster, second, load, topic)
        load.stop()
        await asyncio.wait_for(running, timeout=90)
        assert service.is_running(), "the command server exited while brokers were killed"
    finally:
        service.stop()
    assert "taken over" not in service.log_text()

    acknowledged = [sent for sent in load.sent if sent.version is not None]
    assert [sent.refusal for sent in load.sent if sent.version is None] == []
    events = _read_events(cluster, stack, topic)
    by_command: defaultdict[str, list[Event]] = defaultdict(list)
    for event in events:
        by_command[event.command_id].append(event)

    ids = Counter(event.event_id for event in events)
    assert [event_id for event_id, n in ids.items() if n > 1] == [], "an event in the log twice"
    wrong = {
        sent.command_id: len(by_command[sent.command_id])
        for sent in acknowledged
        if len(by_command[sent.command_id]) != EVENTS_OF[sent.kind]
    }
    assert wrong == {}, "acknowledged commands lost (0) or applied twice (more)"
    assert set(by_command) == {sent.command_id for sent in acknowledged}, "unknown commands"
    for sent in acknowledged:
        answered = next(e for e in by_command[sent.command_id] if e.account_id == sent.accounts[0])
        assert answered.version == sent.version, f"{sent.kind} {sent.command_id}: answer != log"
    states = replay(events)  # raises on any event that cannot follow the one before it
    assert {account: state.balance for account, state in states.items()} == load.balances

    retried = sum(1 for sent in load.sent if sent.retries)
    print(
        f"\nbroker fail-over: killed node {first} then node {second}; writes stalled "
        f"{first_stall:.1f} s and {second_stall:.1f} s; {len(acknowledged)} commands "
        f"acknowledged ({retried} after retries), {len(events)} events; "
        f"{time.monotonic() - began:.0f} s"
    )


async def _kill_and_restart(cluster: KafkaCluster, node_id: int, load: Load, topic: str) -> float:
    """SIGKILL the node, wait until writes go on without it, start it again and wait until its
    replicas are back in sync; returns the longest time without an acknowledgement while the
    node was down."""
    node = cluster.node(node_id)
    killed = time.monotonic()
    await asyncio.to_thread(node.kill)
    await eventually_async(
        lambda: _true(load.acks_since(killed) >= RESUMED_ACKS),
        timeout=60,
        message=f"writes going on with node {node_id} down",
    )
    restarting = time.monotonic()
    assert not node.is_running()
    await asyncio.to_thread(node.start)
    await eventually_async(
        lambda: asyncio.to_thread(cluster.fully_replicated, [topic, "__transaction_state"]),
        timeout=60,
        message=f"node {node_id}'s replicas back in sync",
    )
    return load.longest_gap(killed, restarting)


def _busiest_other(cluster: KafkaCluster, topic: str, other_than: int) -> int:
    """The node, other than `other_than`, that leads the most partitions of `topic`."""
    counts = Counter(leader for leader in cluster.leaders(topic).values() if leader > 0)
    return max(
        (node.node_id for node in cluster.nodes if node.node_id != other_than),
        key=lambda node_id: counts[node_id],
    )


def _read_events(cluster: KafkaCluster, stack: LocalStack, topic: str) -> list[Event]:
    """Every committed event of `topic`, in each partition's order."""
    codec = EventCodec(ConfluentSchemaStore(SchemaRegistryClient({"url": stack.registry_url})))
    consumer = Consumer(read_to_end_config(cluster.bootstrap_servers, f"test-{uuid.uuid4().hex}"))
    try:
        reader = ReadToEnd(consumer, topic, {}, high_watermarks(consumer, topic))
        return [
            codec.decode(msg.value() or b"")
            for batch in reader.batches(time.monotonic() + 60)
            for msg in batch
        ]
    finally:
        consumer.close()


async def _true(value: bool) -> bool:
    return value
