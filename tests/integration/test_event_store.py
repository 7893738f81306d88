"""The event store on real Kafka: the shard's producers take turns, and all of them are fenced."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from datetime import UTC, datetime

import pytest
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from command_server.event_store import EventStore, Fenced
from command_server.topic import ensure_event_topic
from devstack import LocalStack
from ledger.domain.account import Account
from ledger.domain.commands import Deposit, OpenAccount
from ledger.domain.decider import decide, evolve
from ledger.events.codec import EventCodec
from ledger.events.records import Event
from ledger.events.schema_store import ConfluentSchemaStore

pytestmark = pytest.mark.integration


def _history(account_id: str, length: int) -> list[Event]:
    """An account opened, then deposited into `length - 1` times, as the decider decides."""
    now = datetime.now(UTC)
    (opened,) = decide(OpenAccount(f"open-{account_id}", account_id, "EUR", "o"), {}, now)
    events = [opened]
    state: Account = evolve(None, opened)
    for n in range(1, length):
        (event,) = decide(
            Deposit(f"dep-{account_id}-{n}", account_id, "1.00"), {account_id: state}, now
        )
        state = evolve(state, event)
        events.append(event)
    return events


@pytest.fixture
def topic(stack: LocalStack) -> str:
    name = f"event_store_{uuid.uuid4().hex[:12]}"
    ensure_event_topic(AdminClient({"bootstrap.servers": stack.kafka_bootstrap}), name, 2)
    return name


@pytest.fixture
def codec(stack: LocalStack, topic: str) -> EventCodec:
    codec = EventCodec(ConfluentSchemaStore(SchemaRegistryClient({"url": stack.registry_url})))
    codec.register(topic)
    return codec


@pytest.fixture
def ids() -> tuple[str, str]:
    shard = f"test-shard-{uuid.uuid4().hex[:8]}"
    return shard, f"{shard}.1"


@pytest.fixture
def store(
    stack: LocalStack, topic: str, codec: EventCodec, ids: tuple[str, str]
) -> Iterator[EventStore]:
    store = EventStore(stack.kafka_bootstrap, topic, ids, codec)
    store.open()
    yield store
    store.close()


def replayed(
    stack: LocalStack,
    topic: str,
    ids: tuple[str, str],
    codec: EventCodec,
    apply: Callable[[Event, int, int], None],
) -> int:
    """Partition 0 as a new instance of the shard rebuilds it: fenced first, then replayed.

    The fencing is what makes the replay see every committed transaction: a transaction's
    markers are written after its commit returns, and until they are, a read_committed
    consumer's end of the partition (its last stable offset) stops short of it.
    """
    successor = EventStore(stack.kafka_bootstrap, topic, ids, codec)
    successor.open()
    try:
        return successor.replay([0], apply)
    finally:
        successor.close()


def test_transactions_taking_turns_land_in_the_order_they_were_appended(
    stack: LocalStack, topic: str, codec: EventCodec, ids: tuple[str, str], store: EventStore
) -> None:
    events = _history("turns", 24)
    offsets = []
    for event in events:
        # Back to back, each in its own transaction: the producers alternate at every one.
        (offset,) = store.append([(event, 0)])
        offsets.append(offset)
    assert offsets == sorted(offsets)
    seen: list[tuple[Event, int]] = []
    count = replayed(
        stack, topic, ids, codec, lambda event, _partition, offset: seen.append((event, offset))
    )
    assert count == len(events)
    assert [e for e, _ in seen] == events
    assert [o for _, o in seen] == offsets


@pytest.mark.parametrize("appended_before", [0, 1])
def test_a_successor_fences_every_producer_of_the_shard(
    stack: LocalStack,
    topic: str,
    codec: EventCodec,
    ids: tuple[str, str],
    store: EventStore,
    appended_before: int,
) -> None:
    events = _history("fenced", 4)
    for event in events[:appended_before]:
        store.append([(event, 0)])
    successor = EventStore(stack.kafka_bootstrap, topic, ids, codec)
    successor.open()
    try:
        # Whichever producer's turn it is, the zombie cannot write, now or at the next turn.
        for event in events[appended_before : appended_before + 2]:
            with pytest.raises(Fenced):
                store.append([(event, 0)])
        successor.append([(events[appended_before], 0)])
    finally:
        successor.close()
    assert replayed(stack, topic, ids, codec, lambda *_: None) == appended_before + 1
