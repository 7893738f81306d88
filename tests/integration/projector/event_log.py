"""A test topic's log, written the way the command server writes it, and read back the way
the projector reads it."""

import random
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from confluent_kafka import KafkaError, Message, Producer
from confluent_kafka.admin import (  # type: ignore[attr-defined, unused-ignore]
    AdminClient,
    NewTopic,
)

from devstack.stack import LocalStack
from ledger.domain.account import Account
from ledger.domain.commands import CloseAccount, Command, Deposit, OpenAccount, Transfer, Withdraw
from ledger.domain.decider import decide, evolve
from ledger.domain.money import currency_exponent
from ledger.domain.rejection import Rejection
from ledger.events.codec import EventCodec
from ledger.events.records import (
    Event,
)
from ledger.events.schema_store import ConfluentSchemaStore
from ledger.partitioning import partition_of
from projector.consumed import ConsumedRecord
from projector.feed import consumer_config
from projector.log_reader import LogReader
from projector.migrations import bundled, migrate

Headers = list[tuple[str, str | bytes | None]]


def unique_id() -> str:
    return uuid.uuid4().hex[:12]


@dataclass(frozen=True)
class Logged:
    partition: int
    offset: int
    event: Event


class EventLog:
    """Writes to a test topic the way the command server does: transactions, murmur2 keys."""

    def __init__(self, stack: LocalStack, topic: str, partitions: int) -> None:
        self.stack = stack
        self.topic = topic
        self.partitions = partitions
        admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
        config = {"retention.ms": "-1", "retention.bytes": "-1"}
        admin.create_topics([NewTopic(topic, partitions, config=config)])[topic].result(30)
        self.codec = EventCodec(ConfluentSchemaStore.connect(stack.registry_url))
        self.codec.register(topic)
        self.producer = Producer(
            {
                "bootstrap.servers": stack.kafka_bootstrap,
                "transactional.id": f"test-{topic}",
                "linger.ms": 5,
            }
        )
        self.producer.init_transactions(30)
        self.logged: list[Logged] = []

    def write(self, events: Sequence[Event], per_transaction: int = 5000) -> list[Logged]:
        written: list[Logged] = []
        for start in range(0, len(events), per_transaction):
            chunk = events[start : start + per_transaction]
            messages = self._transaction(
                [
                    (self.partition(e.account_id), e.account_id.encode(), self.codec.encode(e), [])
                    for e in chunk
                ]
            )
            written += [
                Logged(msg.partition() or 0, msg.offset() or 0, event)
                for msg, event in zip(messages, chunk, strict=True)
            ]
        written.sort(key=lambda logged: (logged.partition, logged.offset))
        self.logged.extend(written)
        return written

    def write_raw(self, partition: int, key: bytes, value: bytes, headers: Headers) -> int:
        """Bytes no command server would write; returns their offset."""
        [message] = self._transaction([(partition, key, value, headers)])
        return message.offset() or 0

    def partition(self, account_id: str) -> int:
        return partition_of(account_id, self.partitions)

    def last_offsets(self) -> dict[int, int]:
        last: dict[int, int] = {}
        for logged in self.logged:
            last[logged.partition] = max(logged.offset, last.get(logged.partition, -1))
        return last

    def _transaction(self, records: Sequence[tuple[int, bytes, bytes, Headers]]) -> list[Message]:
        """Produce `records` in one transaction; their messages as delivered, in order."""
        delivered: list[Message | None] = [None] * len(records)
        self.producer.begin_transaction()
        for index, (partition, key, value, headers) in enumerate(records):

            def report(err: KafkaError | None, msg: Message, index: int = index) -> None:
                assert err is None, err
                delivered[index] = msg

            while True:
                try:
                    self.producer.produce(
                        self.topic,
                        value,
                        key,
                        partition=partition,
                        headers=headers,
                        on_delivery=report,
                    )
                    break
                except BufferError:
                    self.producer.poll(0.01)
        self.producer.commit_transaction(30)
        self.producer.poll(0)
        messages = [msg for msg in delivered if msg is not None]
        assert len(messages) == len(records), "a committed record had no delivery report"
        return messages


class History:
    """A plausible history of commands, decided by the domain, so every event is valid."""

    def __init__(self, seed: int = 1) -> None:
        self.accounts: dict[str, Account] = {}
        self.random = random.Random(seed)
        self.now = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)

    def decide(self, command: Command) -> list[Event]:
        # Minutes apart, so that the history spans several UTC days.
        self.now += timedelta(minutes=self.random.randint(1, 9))
        events = decide(command, self.accounts, self.now)
        for event in events:
            self.accounts[event.account_id] = evolve(self.accounts.get(event.account_id), event)
        return events

    def generate(self, accounts: int, events: int, prefix: str = "acc") -> list[Event]:
        out: list[Event] = []
        currencies = ("USD", "EUR", "JPY", "KWD")
        ids = [f"{prefix}-{n}" for n in range(accounts)]
        for n, account_id in enumerate(ids):
            out += self.decide(
                OpenAccount(unique_id(), account_id, currencies[n % 4], f"owner {n}")
            )
        while len(out) < events:
            account_id = self.random.choice(ids)
            amount = str(self.random.randint(1, 500))
            roll = self.random.random()
            command: Command
            if roll < 0.45:
                command = Deposit(unique_id(), account_id, amount)
            elif roll < 0.7:
                command = Withdraw(unique_id(), account_id, amount)
            elif roll < 0.995 or len(ids) < 10:
                command = Transfer(unique_id(), account_id, self.random.choice(ids), amount)
            else:
                # Closed accounts leave the pool, so that commands keep succeeding.
                ids.remove(account_id)
                balance = self.accounts[account_id].balance
                if balance:
                    units = Decimal(balance).scaleb(
                        -currency_exponent(self.accounts[account_id].currency)
                    )
                    out += self._maybe(Withdraw(unique_id(), account_id, str(units)))
                command = CloseAccount(unique_id(), account_id)
            out += self._maybe(command)
        return out

    def _maybe(self, command: Command) -> list[Event]:
        try:
            return self.decide(command)
        except Rejection:
            return []


def records_of(stack: LocalStack, topic: str, codec: EventCodec) -> list[ConsumedRecord]:
    """The whole log as the projector sees it."""
    config = consumer_config(stack.kafka_bootstrap, f"test-reader-{unique_id()}")
    reader = LogReader(config, topic, codec, 1000)
    try:
        reader.seek({}, reader.high_watermarks())
        records: list[ConsumedRecord] = []
        while (batch := reader.next_batch()) is not None:
            records += batch
        return records
    finally:
        reader.close()


async def written_log(
    stack: LocalStack, topic: str, db: Any, seed: int, events: int
) -> tuple[EventLog, list[ConsumedRecord]]:
    """A log of valid events with an undecodable record in the middle, as consumed; the read
    model migrated and empty."""
    history = History(seed=seed).generate(accounts=60 if events > 3000 else 30, events=events)
    log = EventLog(stack, topic, partitions=3)
    log.write(history[: len(history) // 2])
    log.write_raw(1, b"junk", b"not avro", [])
    log.write(history[len(history) // 2 :])
    await migrate(db, "ledger", bundled())
    # Interleaved the same way every run: how a consumer interleaves partitions depends on when
    # their fetches answer, and which accounts a cut of the log holds must not.
    records = sorted(records_of(stack, topic, log.codec), key=lambda r: (r.offset, r.partition))
    return log, records


def cut(records: Sequence[ConsumedRecord], size: int) -> list[list[ConsumedRecord]]:
    return [list(records[start : start + size]) for start in range(0, len(records), size)]
