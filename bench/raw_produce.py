"""The physical baseline of the batch path: the same Avro events produced straight into Kafka.

Deposit events are decided by the domain beforehand (one per account, from its opened state)
and, timed, encoded with our `EventCodec` and written by one transactional producer configured
as the command server's (`command_server.transactions.new_producer`) into the partitions the
command server would choose, `transaction` events per transaction, one transaction after the
other. What is left out of the ledger's path: gRPC, checking and deciding each command, the pipe
to the writer, and the answers: the floor the batch path is measured against.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from command_server.topic import ensure_event_topic
from command_server.transactions import commit, initialise, new_producer
from ledger.command_ids import new_command_id
from ledger.domain.commands import Deposit, OpenAccount
from ledger.domain.decider import decide, evolve
from ledger.events.codec import EventCodec
from ledger.events.records import Event
from ledger.events.schema_store import ConfluentSchemaStore
from ledger.kafka_security import KafkaSecurity
from ledger.partitioning import partition_of

PARTITIONS = 6


@dataclass(frozen=True)
class Produced:
    events: int
    seconds: float
    cpu_s: float
    """CPU seconds of this process (the producer's librdkafka threads included)."""

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def deposit_events(accounts: int, prefix: str) -> list[Event]:
    """One Deposit event per account `<prefix><n>`, decided from its opened state."""
    now = datetime.now(UTC)
    events = []
    for number in range(accounts):
        account_id = f"{prefix}{number}"
        opened = decide(OpenAccount(new_command_id(), account_id, "USD", "bench"), {}, now)
        state = evolve(None, opened[0])
        (deposit,) = decide(Deposit(new_command_id(), account_id, "1.00"), {account_id: state}, now)
        events.append(deposit)
    return events


class RawProducer:
    """One transactional producer on a topic of its own, writing pre-decided events."""

    def __init__(self, bootstrap: str, registry_url: str, topic: str) -> None:
        self._partitions = ensure_event_topic(
            AdminClient({"bootstrap.servers": bootstrap}), topic, PARTITIONS
        )
        self._topic = topic
        self._codec = EventCodec(ConfluentSchemaStore(SchemaRegistryClient({"url": registry_url})))
        self._codec.register(topic)
        self._producer = new_producer(
            bootstrap, f"bench-raw-{uuid.uuid4().hex[:8]}", KafkaSecurity()
        )
        error = initialise(self._producer)
        if error is not None:
            raise RuntimeError(f"the raw producer could not initialise: {error.str()}")

    def produce(self, events: list[Event], transaction: int, seconds: float) -> Produced:
        """Write `events` round and round, `transaction` per transaction, for `seconds`."""
        producer, codec, topic, partitions = (
            self._producer,
            self._codec,
            self._topic,
            self._partitions,
        )
        keyed = [(e, e.account_id.encode(), partition_of(e.account_id, partitions)) for e in events]
        written = 0
        next_event = 0
        cpu_started = time.process_time()
        started = time.monotonic()
        deadline = started + seconds
        while time.monotonic() < deadline:
            producer.begin_transaction()
            for _ in range(transaction):
                event, key, partition = keyed[next_event]
                next_event = (next_event + 1) % len(keyed)
                producer.produce(topic, codec.encode(event), key, partition=partition)
            commit(producer)
            written += transaction
        return Produced(written, time.monotonic() - started, time.process_time() - cpu_started)

    def close(self) -> None:
        self._producer.flush(10)
