"""The projector against the real stack: Kafka, the registry and PostgreSQL.

Each test gets its own topic, consumer group and PostgreSQL database. Events come from the real
command server where the test is about what clients do, and are written directly (decided by the
domain, encoded by the codec, produced in Kafka transactions) where the test needs a big backlog
or records no command server would write.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import grpc
import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import (  # type: ignore[attr-defined, unused-ignore]
    AdminClient,
    NewTopic,
)

from devstack.ledger_services import LedgerService
from devstack.ports import LOOPBACK, free_ports_in_a_row
from devstack.process import alive, child_pids, clean_environment
from devstack.stack import LocalStack
from ledger.consistency import ConsistencyToken
from ledger.domain.account import Account
from ledger.domain.commands import CloseAccount, Command, Deposit, OpenAccount, Transfer, Withdraw
from ledger.domain.decider import decide, evolve
from ledger.domain.money import currency_exponent
from ledger.domain.rejection import Rejection
from ledger.events.codec import EventCodec
from ledger.events.records import (
    Event,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCredited,
    TransferDebited,
)
from ledger.events.schema_store import ConfluentSchemaStore
from ledger.partitioning import partition_of
from ledger.read_model_contract import NOTIFY_CHANNEL
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc
from projector.batch import apply_batch
from projector.consumed import ConsumedRecord
from projector.feed import consumer_config
from projector.log_reader import LogReader
from projector.migrations import bundled, migrate
from projector.rebuild import Rebuild

pytestmark = pytest.mark.integration

DEADLINE_S = 60.0
MOVEMENTS = (MoneyDeposited, MoneyWithdrawn, TransferDebited, TransferCredited)
# Columns that say when a row was written rather than what it holds.
COMPARED = {
    "accounts": ("*", "account_id"),
    "movements": ("*", "account_id, version"),
    "daily_summaries": ("*", "account_id, day"),
    "checkpoints": ("topic, partition, last_offset", "topic, partition"),
    "dead_letters": ('topic, partition, "offset", error', 'topic, partition, "offset"'),
}


Headers = list[tuple[str, str | bytes | None]]


def _id() -> str:
    return uuid.uuid4().hex[:12]


# --- the log --------------------------------------------------------------------------------


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
            out += self.decide(OpenAccount(_id(), account_id, currencies[n % 4], f"owner {n}"))
        while len(out) < events:
            account_id = self.random.choice(ids)
            amount = str(self.random.randint(1, 500))
            roll = self.random.random()
            command: Command
            if roll < 0.45:
                command = Deposit(_id(), account_id, amount)
            elif roll < 0.7:
                command = Withdraw(_id(), account_id, amount)
            elif roll < 0.995 or len(ids) < 10:
                command = Transfer(_id(), account_id, self.random.choice(ids), amount)
            else:
                # Closed accounts leave the pool, so that commands keep succeeding.
                ids.remove(account_id)
                balance = self.accounts[account_id].balance
                if balance:
                    units = Decimal(balance).scaleb(
                        -currency_exponent(self.accounts[account_id].currency)
                    )
                    out += self._maybe(Withdraw(_id(), account_id, str(units)))
                command = CloseAccount(_id(), account_id)
            out += self._maybe(command)
        return out

    def _maybe(self, command: Command) -> list[Event]:
        try:
            return self.decide(command)
        except Rejection:
            return []


# --- the read model -------------------------------------------------------------------------


@dataclass(frozen=True)
class Model:
    """What must hold after projecting a log: per account (balance in minor units, version,
    status) and the (account, version) of every movement."""

    accounts: dict[str, tuple[int, int, str]]
    movements: set[tuple[str, int]]


def fold(logged: Sequence[Logged], upto: dict[int, int] | None = None) -> Model:
    """The model the log implies, up to the given last offset per partition (default: all)."""
    accounts: dict[str, Account] = {}
    movements: set[tuple[str, int]] = set()
    for item in sorted(logged, key=lambda logged: (logged.partition, logged.offset)):
        if upto is not None and item.offset > upto.get(item.partition, -1):
            continue
        event = item.event
        accounts[event.account_id] = evolve(accounts.get(event.account_id), event)
        if isinstance(event, MOVEMENTS):
            movements.add((event.account_id, event.version))
    return Model(
        {a.account_id: (a.balance, a.version, a.status.name) for a in accounts.values()},
        movements,
    )


async def read_model(connection: Any) -> Model:
    rows = await connection.fetch(
        "SELECT account_id, currency, balance, version, status FROM accounts"
    )
    movements = await connection.fetch("SELECT account_id, version FROM movements")
    return Model(
        {
            row["account_id"]: (
                int(row["balance"].scaleb(currency_exponent(row["currency"]))),
                row["version"],
                row["status"],
            )
            for row in rows
        },
        {(row["account_id"], row["version"]) for row in movements},
    )


async def snapshot(connection: Any, schema: str = "ledger") -> dict[str, list[str]]:
    """Every table's rows as text (so that 1.50 and 1.5 differ), in key order."""
    tables = {}
    for table, (columns, order) in COMPARED.items():
        rows = await connection.fetch(
            f"SELECT ({columns})::text AS row FROM (SELECT * FROM {schema}.{table}) t"
            f" ORDER BY {order}"
            if columns != "*"
            else f"SELECT t::text AS row FROM {schema}.{table} t ORDER BY {order}"
        )
        tables[table] = [row["row"] for row in rows]
    return tables


async def checkpoints(connection: Any, topic: str) -> dict[int, int]:
    rows = await connection.fetch(
        "SELECT partition, last_offset FROM ledger.checkpoints WHERE topic = $1", topic
    )
    return {row["partition"]: row["last_offset"] for row in rows}


async def eventually(
    what: str, check: Callable[[], Awaitable[bool]], deadline: float = DEADLINE_S
) -> None:
    end = time.monotonic() + deadline
    while not await check():
        if time.monotonic() > end:
            pytest.fail(f"timed out after {deadline:.0f}s waiting for {what}")
        await asyncio.sleep(0.05)


async def caught_up(connection: Any, topic: str, last: dict[int, int]) -> None:
    async def covered() -> bool:
        try:
            done = await checkpoints(connection, topic)
        except asyncpg.UndefinedTableError:
            return False
        return all(done.get(p, -1) >= offset for p, offset in last.items())

    await eventually(f"checkpoints {last}", covered)


def status(service: LedgerService | str) -> dict[str, Any]:
    """The /status of a projector, or of the one serving it at an address."""
    address = service if isinstance(service, str) else service.address
    with urllib.request.urlopen(f"http://{address}/status", timeout=5) as reply:
        document: dict[str, Any] = json.load(reply)
        return document


def records_of(stack: LocalStack, topic: str, codec: EventCodec) -> list[ConsumedRecord]:
    """The whole log as the projector sees it."""
    config = consumer_config(stack.kafka_bootstrap, f"test-reader-{_id()}")
    reader = LogReader(config, topic, codec, 1000)
    try:
        reader.seek({}, reader.high_watermarks())
        records: list[ConsumedRecord] = []
        while (batch := reader.next_batch()) is not None:
            records += batch
        return records
    finally:
        reader.close()


# --- fixtures -------------------------------------------------------------------------------


@pytest.fixture
def topic() -> str:
    return f"events_{_id()}"


@pytest.fixture
async def database(stack: LocalStack) -> AsyncIterator[str]:
    name = f"projector_{_id()}"
    admin = await asyncpg.connect(stack.postgres.url("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield stack.postgres.url(name)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db(database: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(database, server_settings={"search_path": "ledger"})
    yield connection
    await connection.close()


@pytest.fixture
def projectors(
    stack: LocalStack, topic: str, database: str, tmp_path: Path
) -> Iterator[Callable[..., LedgerService]]:
    """Makes projector processes for the test's topic, database and consumer group."""
    made: list[LedgerService] = []
    group = f"read_model_{_id()}"

    def make(name: str = "projector", workers: int = 1, **env: str) -> LedgerService:
        """A projector; with `workers` > 1, a supervisor of that many (worker i serves its
        status on the service's address with port + i)."""
        service = LedgerService.projector(
            stack,
            tmp_path,
            topic=topic,
            http=f"{LOOPBACK}:{free_ports_in_a_row(workers)}",
            name=name,
            extra_env={
                "LEDGER_DATABASE_URL": database,
                "LEDGER_PROJECTOR_GROUP": group,
                # The broker's minimum: a SIGKILLed instance's partitions move on within 6 s.
                "LEDGER_PROJECTOR_SESSION_TIMEOUT_MS": "6000",
                "LEDGER_PROJECTOR_WORKERS": str(workers),
                **env,
            },
        )
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop()


def run_rebuild(stack: LocalStack, topic: str, database: str) -> subprocess.CompletedProcess[str]:
    env = {**stack.environment(), "LEDGER_TOPIC": topic, "LEDGER_DATABASE_URL": database}
    return subprocess.run(
        [sys.executable, "-m", "projector", "rebuild"],
        env=clean_environment(env),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


# --- tests ----------------------------------------------------------------------------------


async def test_projects_what_the_command_server_writes(
    stack: LocalStack,
    topic: str,
    database: str,
    db: Any,
    tmp_path: Path,
    projectors: Callable[..., LedgerService],
) -> None:
    a, b, y, k = f"a-{_id()}", f"b-{_id()}", f"y-{_id()}", f"k-{_id()}"
    commands = LedgerService.command_server(stack, tmp_path, topic=topic)
    commands.start()
    try:
        async with grpc.aio.insecure_channel(commands.address) as channel:
            client = pb_grpc.CommandServiceStub(channel)
            for account, currency in ((a, "EUR"), (b, "EUR"), (y, "JPY"), (k, "KWD")):
                await client.OpenAccount(
                    pb.OpenAccountRequest(
                        command_id=_id(), account_id=account, currency=currency, owner="T"
                    )
                )
            await client.Deposit(pb.DepositRequest(command_id=_id(), account_id=a, amount="100.50"))
            await client.Withdraw(pb.WithdrawRequest(command_id=_id(), account_id=a, amount="0.5"))
            transfer_id = _id()
            await client.Transfer(
                pb.TransferRequest(
                    command_id=transfer_id, from_account_id=a, to_account_id=b, amount="100"
                )
            )
            await client.Deposit(pb.DepositRequest(command_id=_id(), account_id=y, amount="500"))
            await client.Deposit(pb.DepositRequest(command_id=_id(), account_id=k, amount="1.005"))
            closed = await client.CloseAccount(
                pb.CloseAccountRequest(command_id=_id(), account_id=a)
            )
            last = await client.Withdraw(
                pb.WithdrawRequest(command_id=_id(), account_id=b, amount="40.25")
            )
    finally:
        commands.stop()
    token = ConsistencyToken.decode(closed.consistency_token).merge(
        ConsistencyToken.decode(last.consistency_token)
    )

    listener = await asyncpg.connect(database)
    notified: list[dict[str, Any]] = []
    await listener.add_listener(
        "ledger_checkpoints", lambda *args: notified.append(json.loads(args[-1]))
    )
    projector = projectors()
    projector.start()

    async def token_covered() -> bool:
        heard: dict[int, int] = {}
        for payload in notified:
            for partition, offset in payload["checkpoints"].items():
                heard[int(partition)] = max(offset, heard.get(int(partition), -1))
        return token.covered_by(heard)

    await eventually("a notification covering the last command's token", token_covered)
    await listener.close()
    assert {payload["topic"] for payload in notified} == {topic}
    assert token.covered_by(await checkpoints(db, topic))

    accounts = {r["account_id"]: r for r in await db.fetch("SELECT * FROM accounts")}
    assert (accounts[a]["status"], accounts[a]["version"]) == ("CLOSED", 5)
    assert str(accounts[a]["balance"]) == "0.00"
    assert accounts[a]["closed_at"] is not None
    assert (str(accounts[b]["balance"]), accounts[b]["version"]) == ("59.75", 3)
    assert (str(accounts[y]["balance"]), accounts[y]["currency"]) == ("500", "JPY")
    assert str(accounts[k]["balance"]) == "1.005"
    movements = await db.fetch(
        "SELECT kind, amount::text, balance_after::text, counterparty_id, transfer_id"
        " FROM movements WHERE account_id = $1 ORDER BY version",
        a,
    )
    assert [tuple(m) for m in movements] == [
        ("DEPOSIT", "100.50", "100.50", None, None),
        ("WITHDRAWAL", "0.50", "100.00", None, None),
        ("TRANSFER_OUT", "100.00", "0.00", b, transfer_id),
    ]
    incoming = await db.fetchrow(
        "SELECT kind, counterparty_id, transfer_id FROM movements WHERE account_id = $1"
        " AND version = 2",
        b,
    )
    assert tuple(incoming) == ("TRANSFER_IN", a, transfer_id)
    day = await db.fetchrow(
        "SELECT day, inflow::text, outflow::text, movement_count, closing_balance::text"
        " FROM daily_summaries WHERE account_id = $1",
        a,
    )
    # Commands were decided moments ago, so all on one UTC day (unless run at midnight).
    assert tuple(day)[1:] == ("100.50", "100.50", 3, "0.00")
    assert isinstance(day["day"], date)

    await eventually("a lag of 0 on every partition", _assigned(projector, 6))
    report = status(projector)
    assert (report["events_applied"], report["dead_letters"]) == (12, 0)
    # Kafka's committed offsets follow PostgreSQL's checkpoints, for lag monitoring tools.
    done = await checkpoints(db, topic)
    watcher = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": projector.env["LEDGER_PROJECTOR_GROUP"],
        }
    )
    try:

        async def committed_to_kafka() -> bool:
            asked = [TopicPartition(topic, p) for p in done]
            found = {tp.partition: tp.offset for tp in watcher.committed(asked, timeout=10)}
            return found == {p: offset + 1 for p, offset in done.items()}

        await eventually("offsets committed to Kafka", committed_to_kafka)
    finally:
        watcher.close()
    projector.stop()
    assert projector.wait_exit(5) == 0
    assert "stopped" in projector.log_text()


async def test_applying_the_same_records_again_changes_nothing(
    stack: LocalStack, topic: str, db: Any, projectors: Callable[..., LedgerService]
) -> None:
    log = EventLog(stack, topic, partitions=3)
    log.write(History().generate(accounts=50, events=3000))
    log.write_raw(0, b"junk", b"not avro", [])
    records = records_of(stack, topic, log.codec)
    await migrate(db, "ledger", bundled())

    first = [
        await apply_batch(db, topic, records[i : i + 700]) for i in range(0, len(records), 700)
    ]
    assert sum(r.applied for r in first) == 3000
    assert sum(r.dead_letters for r in first) == 1
    once = await snapshot(db)
    # The same batches again, then differently cut and overlapping ones: all skipped.
    again = [
        await apply_batch(db, topic, records[i : i + 700]) for i in range(0, len(records), 700)
    ]
    overlapping = await apply_batch(db, topic, records[100:2500] + records[1000:])
    assert sum(r.applied + r.dead_letters for r in [*again, overlapping]) == 0
    assert await snapshot(db) == once
    assert await read_model(db) == fold(log.logged)

    # A projector process finds everything applied, also with Kafka's offsets deleted: they are
    # only for lag tools, PostgreSQL's checkpoints say where to resume.
    projector = projectors()
    projector.start()
    await eventually("the projector to pick up", _assigned(projector, 3))
    projector.stop()
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    group = projector.env["LEDGER_PROJECTOR_GROUP"]
    admin.delete_consumer_groups([group], request_timeout=30)[group].result(30)
    projector.start()
    await eventually("the projector to pick up", _assigned(projector, 3))
    assert status(projector)["events_applied"] == 0
    assert await snapshot(db) == once


def _applied(report: dict[str, Any], last: dict[int, int]) -> bool:
    partitions = report["partitions"]
    return all(
        (partitions.get(str(p)) or {}).get("checkpoint") is not None
        and partitions[str(p)]["checkpoint"] >= offset
        for p, offset in last.items()
    )


def _assigned(projector: LedgerService, partitions: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        report = status(projector)
        return len(report["partitions"]) == partitions and all(
            p["lag"] == 0 for p in report["partitions"].values()
        )

    return check


async def test_sigkill_in_the_middle_of_a_batch_loses_and_repeats_nothing(
    stack: LocalStack,
    topic: str,
    database: str,
    db: Any,
    projectors: Callable[..., LedgerService],
) -> None:
    log = EventLog(stack, topic, partitions=3)
    log.write(History().generate(accounts=600, events=12_000))
    projector = projectors()
    projector.start()

    async def inside_a_batch() -> bool:
        applying = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'ledger-projector' AND xact_start IS NOT NULL"
        )
        return bool(applying) and bool(await checkpoints(db, topic))

    await eventually("the projector to be inside a batch transaction", inside_a_batch)
    projector.kill()

    # What committed is exactly a prefix of each partition: the log up to its checkpoint.
    done = await checkpoints(db, topic)
    last = log.last_offsets()
    assert any(done.get(p, -1) < offset for p, offset in last.items()), "killed too late"
    assert await read_model(db) == fold(log.logged, upto=done)

    projector.start()
    await caught_up(db, topic, last)
    # Equal sets of (account, version) of movements: none missing, none twice.
    assert await read_model(db) == fold(log.logged)


async def test_undecodable_records_go_to_the_dead_letter_topic(
    stack: LocalStack, topic: str, db: Any, projectors: Callable[..., LedgerService]
) -> None:
    log = EventLog(stack, topic, partitions=1)
    history = History()
    log.write(history.decide(OpenAccount(_id(), "poisoned", "USD", "P")))
    garbage = log.write_raw(0, b"poisoned", b"\xff garbage", [("trace", b"t-1")])
    unknown_schema = log.write_raw(0, b"poisoned", b"\x00\x7f\xff\xff\xf0" + b"\x02" * 20, [])
    log.write(history.decide(Deposit(_id(), "poisoned", "7.25")))
    projector = projectors()
    projector.start()
    await caught_up(db, topic, log.last_offsets())

    account = await db.fetchrow("SELECT balance::text, version FROM accounts")
    assert tuple(account) == ("7.25", 2)
    letters = await db.fetch('SELECT "offset", error FROM dead_letters ORDER BY "offset"')
    assert [row["offset"] for row in letters] == [garbage, unknown_schema]
    assert "magic byte" in letters[0]["error"]
    assert "schema id" in letters[1]["error"]
    assert status(projector)["dead_letters"] == 2

    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"test-{_id()}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign([TopicPartition(f"{topic}.dlq", 0, 0)])
        dead: list[Message] = []
        end = time.monotonic() + DEADLINE_S
        while len(dead) < 2 and time.monotonic() < end:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                dead.append(message)
    finally:
        consumer.close()
    assert [(m.key(), m.value()) for m in dead] == [
        (b"poisoned", b"\xff garbage"),
        (b"poisoned", b"\x00\x7f\xff\xff\xf0" + b"\x02" * 20),
    ]
    headers = [dict(m.headers() or []) for m in dead]
    assert headers[0]["trace"] == b"t-1"
    for message_headers, offset in zip(headers, (garbage, unknown_schema), strict=True):
        assert message_headers["original_topic"] == topic.encode()
        assert message_headers["original_partition"] == b"0"
        assert message_headers["original_offset"] == str(offset).encode()
        assert message_headers["error"]


# With two workers, the one that owns the partition meets the event, and its exit code ends the
# supervisor and the other worker.
@pytest.mark.parametrize("workers", [1, 2])
async def test_a_contradicting_event_stops_the_projector_and_applies_nothing_of_its_batch(
    stack: LocalStack,
    topic: str,
    database: str,
    db: Any,
    projectors: Callable[..., LedgerService],
    workers: int,
) -> None:
    log = EventLog(stack, topic, partitions=1)
    history = History()
    log.write(history.decide(OpenAccount(_id(), "gappy", "EUR", "G")))
    log.write(history.decide(Deposit(_id(), "gappy", "1")))
    projector = projectors(workers=workers)
    projector.start()
    await caught_up(db, topic, log.last_offsets())
    before = await snapshot(db)

    valid = history.decide(Deposit(_id(), "gappy", "2"))
    history.decide(Deposit(_id(), "gappy", "3"))  # version 4 never reaches the log
    gap = history.decide(Deposit(_id(), "gappy", "4"))
    written = log.write(valid + gap)
    assert projector.wait_exit(DEADLINE_S) == 3
    text = projector.log_text()
    if workers == 2:
        # The other worker may meet the event too, once the partition moves to it.
        assert "exited with exit code 3; stopping all workers" in text, text[-2000:]
    assert (
        f"event at topic {topic!r} partition 0 offset {written[1].offset} (account 'gappy', "
        "event version 5) contradicts the read model, where the account is at version 3"
    ) in text, text[-2000:]
    # Version 3 came in the same batch as the gap, so it was not applied either.
    assert await snapshot(db) == before

    rebuilt = run_rebuild(stack, topic, database)
    assert rebuilt.returncode == 4, rebuilt.stderr[-2000:]
    assert "rebuild failed, the live read model is untouched" in rebuilt.stderr
    assert await snapshot(db) == before


async def test_rebuild_swaps_in_a_model_identical_to_the_live_one(
    stack: LocalStack,
    topic: str,
    database: str,
    db: Any,
    projectors: Callable[..., LedgerService],
) -> None:
    log = EventLog(stack, topic, partitions=3)
    history = History(seed=7)
    log.write(history.generate(accounts=300, events=6000))
    log.write_raw(1, b"x", b"\x00\x00\x00", [])
    projector = projectors()
    projector.start()
    await caught_up(db, topic, log.last_offsets())

    # Events that arrive after the rebuild took the log's end are only in the live model when
    # the swap begins: the swap must catch up on them under its lock.
    reader = LogReader(
        consumer_config(stack.kafka_bootstrap, f"test-rebuild-{_id()}"), topic, log.codec, 5000
    )
    ends_at_start = reader.high_watermarks

    def high_watermarks(timeout: float = 30) -> dict[int, int]:
        ends = ends_at_start(timeout)
        log.write(history.generate(accounts=20, events=500, prefix="late"))
        deadline = time.monotonic() + DEADLINE_S
        while not _applied(status(projector), log.last_offsets()):
            assert time.monotonic() < deadline, "the live projector did not apply late events"
            time.sleep(0.05)
        return ends

    reader.high_watermarks = high_watermarks  # type: ignore[method-assign]
    connection = await asyncpg.connect(database, server_settings={"search_path": "ledger_rebuild"})
    heard: list[dict[str, Any]] = []
    listener = await asyncpg.connect(database)
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: heard.append(json.loads(args[3])))
    try:
        late = log.last_offsets()

        async def run() -> Any:
            return await Rebuild(topic, "ledger", "ledger_rebuild", bundled(), reader).run(
                connection, keep_old=True
            )

        report = await run()
        swapped = {str(p): offset for p, offset in (await checkpoints(db, topic)).items()}

        # The shadow announced its batches under its own name, which readers ignore; the
        # swap announces the checkpoints it brought in as the live schema's.
        async def announced() -> bool:
            return bool(heard) and heard[-1] == {
                "topic": topic,
                "schema": "ledger",
                "checkpoints": swapped,
            }

        await eventually("the swapped-in checkpoints announced", announced)
        assert any(message["schema"] == "ledger_rebuild" for message in heard)
    finally:
        reader.close()
        await connection.close()
        await listener.close()
    assert report.caught_up > 0
    assert report.old_schema is not None
    assert late != log.last_offsets()
    await caught_up(db, topic, log.last_offsets())
    assert await snapshot(db, "ledger") == await snapshot(db, report.old_schema)
    assert await read_model(db) == fold(log.logged)

    # The live projector carries on in the swapped-in schema.
    log.write(history.decide(OpenAccount(_id(), "after-swap", "USD", "S")))
    await caught_up(db, topic, log.last_offsets())
    assert await read_model(db) == fold(log.logged)
    assert not await db.fetchval(
        f"SELECT count(*) FROM {report.old_schema}.accounts WHERE account_id = 'after-swap'"
    )

    # And the command line does the same, dropping the old schema.
    before = await snapshot(db)
    rebuilt = run_rebuild(stack, topic, database)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert "rebuilt ledger" in rebuilt.stderr
    assert await snapshot(db) == before
    assert not await db.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ledger_old_%' AND nspname <> $1",
        report.old_schema,
    )
    log.write(history.decide(Deposit(_id(), "after-swap", "2")))
    await caught_up(db, topic, log.last_offsets())
    assert await read_model(db) == fold(log.logged)


async def test_two_instances_share_the_partitions_and_build_the_same_model(
    stack: LocalStack,
    topic: str,
    db: Any,
    database: str,
    projectors: Callable[..., LedgerService],
) -> None:
    log = EventLog(stack, topic, partitions=4)
    history = History(seed=3)
    log.write(history.generate(accounts=400, events=4000))
    first, second = projectors("projector-1"), projectors("projector-2")
    first.start()
    second.start()

    async def shared() -> bool:
        mine, theirs = set(status(first)["partitions"]), set(status(second)["partitions"])
        return bool(mine) and bool(theirs) and not mine & theirs and len(mine | theirs) == 4

    await eventually("both instances to own partitions", shared)
    log.write(history.generate(accounts=10, events=4000, prefix="more"))
    await caught_up(db, topic, log.last_offsets())
    assert await read_model(db) == fold(log.logged)
    both = await snapshot(db)

    # One process applying the whole log alone produces the same tables.
    alone = await asyncpg.connect(database, server_settings={"search_path": "ledger_alone"})
    try:
        await migrate(alone, "ledger_alone", bundled())
        records = records_of(stack, topic, log.codec)
        for start in range(0, len(records), 5000):
            await apply_batch(alone, topic, records[start : start + 5000])
        assert await snapshot(alone, "ledger_alone") == both
    finally:
        await alone.close()


async def test_workers_share_the_partitions_and_stop_together(
    stack: LocalStack,
    topic: str,
    db: Any,
    projectors: Callable[..., LedgerService],
) -> None:
    log = EventLog(stack, topic, partitions=4)
    history = History(seed=5)
    log.write(history.generate(accounts=200, events=2000))
    supervisor = projectors(workers=2)
    host, port = supervisor.address.rsplit(":", 1)
    addresses = [supervisor.address, f"{host}:{int(port) + 1}"]
    supervisor.start()
    assert supervisor.pid is not None
    workers = child_pids(supervisor.pid)
    assert len(workers) == 2

    async def shared() -> bool:
        try:
            owned = [set(status(address)["partitions"]) for address in addresses]
        except OSError:
            return False  # the second worker's endpoint is not up yet
        mine, theirs = owned
        return bool(mine) and bool(theirs) and not mine & theirs and len(mine | theirs) == 4

    await eventually("both workers to own partitions", shared)
    log.write(history.generate(accounts=10, events=2000, prefix="more"))
    await caught_up(db, topic, log.last_offsets())
    assert await read_model(db) == fold(log.logged)

    os.kill(supervisor.pid, signal.SIGTERM)
    assert supervisor.wait_exit(DEADLINE_S) == 0
    assert not alive(workers)
    assert supervisor.log_text().count("stopped with exit code 0") == 2


async def test_workers_stop_when_their_supervisor_dies(
    stack: LocalStack, topic: str, projectors: Callable[..., LedgerService]
) -> None:
    EventLog(stack, topic, partitions=2)
    supervisor = projectors(workers=2)
    supervisor.start()
    assert supervisor.pid is not None
    workers = child_pids(supervisor.pid)
    assert len(workers) == 2

    os.kill(supervisor.pid, signal.SIGKILL)  # the supervisor alone, not its process group
    supervisor.wait_exit(DEADLINE_S)

    async def gone() -> bool:
        return not alive(workers)

    await eventually("the orphaned workers to stop", gone)
    assert supervisor.log_text().count("the supervisor is gone") == 2
