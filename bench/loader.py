"""Fill an event topic fast: valid account histories, produced directly in Kafka transactions.

The restart benchmark needs up to a million events in the log. Going through gRPC would take
longer than the benchmark itself, so the events are built here with the domain's own `decide`
(so every account's history is valid: an AccountOpened, then deposits, each with its running
balance), encoded with the same `EventCodec` and produced by a transactional producer into the
partitions the command server would have chosen.
"""

from __future__ import annotations

import multiprocessing
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from confluent_kafka import KafkaException, Producer
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient

from command_server.topic import ensure_event_topic
from ledger.command_ids import new_command_id
from ledger.domain.account import Account
from ledger.domain.commands import Deposit, OpenAccount
from ledger.domain.decider import decide, evolve
from ledger.events.codec import EventCodec
from ledger.events.records import Event
from ledger.events.schema_store import ConfluentSchemaStore
from ledger.partitioning import partition_of

EVENTS_PER_ACCOUNT = 100
TRANSACTION_EVENTS = 20_000


@dataclass(frozen=True)
class Spread:
    """Events `step_us` microseconds apart from `start_us` (since the epoch), the accounts
    taking turns: every account's opening (in account order), then every account's first
    deposit, and so on; `accounts` is how many there are in all."""

    start_us: int
    step_us: int
    accounts: int

    def time_of(self, account: int, event: int) -> datetime:
        """When account number `account` has its event number `event` (0: its opening)."""
        turn = event * self.accounts + account
        return _EPOCH + timedelta(microseconds=self.start_us + turn * self.step_us)


_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@dataclass(frozen=True)
class Loaded:
    events: int
    accounts: int
    seconds: float

    @property
    def events_per_s(self) -> float:
        return self.events / self.seconds if self.seconds > 0 else 0.0


def histories(
    first_account: int,
    accounts: int,
    per_account: int,
    prefix: str = "restart-",
    spread: Spread | None = None,
) -> Iterator[Event]:
    """Each account: opened, then `per_account - 1` deposits, all decided by the domain; all
    now, or at the times `spread` gives."""
    now = datetime.now(UTC)
    for number in range(first_account, first_account + accounts):
        account_id = f"{prefix}{number}"
        times = (now if spread is None else spread.time_of(number, i) for i in range(per_account))
        opened = decide(OpenAccount(new_command_id(), account_id, "USD", "bench"), {}, next(times))
        state: Account = evolve(None, opened[0])
        yield opened[0]
        for at in times:
            deposit = Deposit(new_command_id(), account_id, "1.00")
            (event,) = decide(deposit, {account_id: state}, at)
            state = evolve(state, event)
            yield event


def load(
    bootstrap: str,
    registry_url: str,
    topic: str,
    *,
    first_account: int,
    accounts: int,
    per_account: int = EVENTS_PER_ACCOUNT,
    prefix: str = "restart-",
    partitions: int = 6,
    spread: Spread | None = None,
) -> Loaded:
    """Append `accounts` valid histories of `per_account` events to `topic` (created with the
    command server's own settings if missing); accounts are named `<prefix><number>`."""
    started = time.monotonic()
    partitions = ensure_event_topic(
        AdminClient({"bootstrap.servers": bootstrap}), topic, partitions
    )
    codec = EventCodec(ConfluentSchemaStore(SchemaRegistryClient({"url": registry_url})))
    codec.register(topic)
    producer = Producer(
        {
            "bootstrap.servers": bootstrap,
            "transactional.id": f"bench-loader-{uuid.uuid4().hex[:8]}",
            "enable.idempotence": True,
            "acks": "all",
            "linger.ms": 20,
            "batch.size": 1_000_000,
            "compression.type": "none",
            "queue.buffering.max.messages": 200_000,
        }
    )
    producer.init_transactions(60)
    count = 0
    in_transaction = 0
    producer.begin_transaction()
    for event in histories(first_account, accounts, per_account, prefix, spread):
        key = event.account_id.encode()
        value = codec.encode(event)
        partition = partition_of(event.account_id, partitions)
        while True:
            try:
                producer.produce(topic, value, key, partition=partition)
                break
            except BufferError:
                producer.poll(0.05)
        count += 1
        in_transaction += 1
        if in_transaction >= TRANSACTION_EVENTS:
            _commit(producer)
            producer.begin_transaction()
            in_transaction = 0
    _commit(producer)
    producer.flush(30)
    return Loaded(count, accounts, time.monotonic() - started)


def _commit(producer: Producer) -> None:
    try:
        producer.commit_transaction(120)
    except KafkaException as exc:
        raise RuntimeError(f"loading events failed: {exc.args[0].str()}") from exc


def _load_chunk(args: tuple[str, str, str, int, int, int, str, Spread | None]) -> Loaded:
    bootstrap, registry_url, topic, first, accounts, per_account, prefix, spread = args
    return load(
        bootstrap,
        registry_url,
        topic,
        first_account=first,
        accounts=accounts,
        per_account=per_account,
        prefix=prefix,
        spread=spread,
    )


def load_in_processes(
    bootstrap: str,
    registry_url: str,
    topic: str,
    *,
    accounts: int,
    first_account: int = 0,
    per_account: int = EVENTS_PER_ACCOUNT,
    prefix: str = "restart-",
    processes: int = 2,
    spread: Spread | None = None,
) -> Loaded:
    """`load` split over `processes` processes by account (deciding and encoding cost a core
    each; one process would load a million events at half the speed)."""
    # Created and registered here first: two loaders registering a new subject at once race in
    # the registry (both find it missing, the second one's compatibility rule then conflicts).
    ensure_event_topic(AdminClient({"bootstrap.servers": bootstrap}), topic, 6)
    EventCodec(ConfluentSchemaStore(SchemaRegistryClient({"url": registry_url}))).register(topic)
    per_process = -(-accounts // processes)
    chunks = [
        (
            bootstrap,
            registry_url,
            topic,
            first_account + start,
            min(per_process, accounts - start),
            per_account,
            prefix,
            spread,
        )
        for start in range(0, accounts, per_process)
    ]
    started = time.monotonic()
    with multiprocessing.get_context("spawn").Pool(len(chunks)) as pool:
        loaded = pool.map(_load_chunk, chunks)
    return Loaded(
        sum(part.events for part in loaded),
        sum(part.accounts for part in loaded),
        time.monotonic() - started,
    )
