"""The query server as a real subprocess over a real PostgreSQL read model.

Part A writes the read model directly, exactly as the projector does (rows, checkpoints and a
NOTIFY on `ledger_checkpoints` in one transaction per batch), so every RPC is tested without
Kafka in the loop. Part B runs the command server, the projector and the query server together.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import random
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import grpc
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from command_server.topic import ensure_event_topic
from devstack.databases import create_database, drop_database
from devstack.ledger_services import LedgerService
from devstack.ports import free_port
from devstack.stack import LocalStack
from ledger.consistency import ConsistencyToken
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import commands_pb2_grpc as cmd_grpc
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration

MIGRATIONS = Path(__file__).resolve().parents[2] / "projector" / "migrations"
CHANNEL = "ledger_checkpoints"
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
# Deadline for anything that should happen promptly; polling loops give up after it.
PROMPTLY_S = 10.0


def _id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def _ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def _date(day: date) -> pb.Date:
    return pb.Date(year=day.year, month=day.month, day=day.day)


async def _code(call: Any) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    return info.value.code(), info.value.details() or ""


# --- A stand-in for the projector ---------------------------------------------------------


@dataclass
class _Account:
    currency: str
    partition: int
    balance: Decimal = Decimal(0)
    version: int = 1
    closed: bool = False


@dataclass
class ReadModelWriter:
    """Writes the read model exactly as the projector does: each batch in one transaction that
    also moves the checkpoints and NOTIFYs `ledger_checkpoints` with them."""

    connection: Any
    topic: str
    accounts: dict[str, _Account] = field(default_factory=dict)
    offsets: dict[int, int] = field(default_factory=dict)
    """Last applied offset per partition."""

    def token_of_next(self, partition: int) -> ConsistencyToken:
        """The token a command would get for the next event on `partition`."""
        return ConsistencyToken.at(partition, self.offsets.get(partition, -1) + 1)

    async def open(
        self,
        account_id: str,
        *,
        currency: str = "USD",
        owner: str = "Owner",
        at: datetime = T0,
        partition: int = 0,
    ) -> None:
        batch: dict[int, int] = {}
        async with self.connection.transaction():
            self._take(partition, batch)  # AccountOpened moves no money: no movement row
            await self.connection.execute(
                "INSERT INTO accounts VALUES ($1, $2, $3, 'OPEN', 0, 1, $4, $5, NULL, $5)",
                account_id,
                currency,
                owner,
                partition,
                at,
            )
            await self._checkpoint(batch)
        self.offsets.update(batch)
        self.accounts[account_id] = _Account(currency, partition)

    async def move(
        self,
        account_id: str,
        kind: str,
        amount: str,
        *,
        at: datetime,
        counterparty: str | None = None,
        transfer_id: str | None = None,
    ) -> int:
        """Apply one movement in a batch of its own; returns the account's new version."""
        return (await self.moves([(account_id, kind, amount, at, counterparty, transfer_id)]))[0]

    async def moves(
        self, movements: Sequence[tuple[str, str, str, datetime, str | None, str | None]]
    ) -> list[int]:
        """Apply movements in one batch (one transaction, one NOTIFY)."""
        versions = []
        batch: dict[int, int] = {}
        async with self.connection.transaction():
            for account_id, kind, amount, at, counterparty, transfer_id in movements:
                versions.append(
                    await self._movement(
                        account_id, kind, Decimal(amount), at, counterparty, transfer_id, batch
                    )
                )
            await self._checkpoint(batch)
        self.offsets.update(batch)
        return versions

    async def close(self, account_id: str, *, at: datetime) -> int:
        account = self.accounts[account_id]
        assert account.balance == 0
        batch: dict[int, int] = {}
        async with self.connection.transaction():
            self._take(account.partition, batch)
            await self.connection.execute(
                "UPDATE accounts SET status = 'CLOSED', version = $2, closed_at = $3, "
                "updated_at = $3 WHERE account_id = $1",
                account_id,
                account.version + 1,
                at,
            )
            await self._checkpoint(batch)
        self.offsets.update(batch)
        account.version += 1
        account.closed = True
        return account.version

    async def touch(self, partition: int) -> None:
        """A batch of events about accounts nobody looks at: only the checkpoint moves."""
        batch: dict[int, int] = {}
        async with self.connection.transaction():
            self._take(partition, batch)
            await self._checkpoint(batch)
        self.offsets.update(batch)

    def _take(self, partition: int, batch: dict[int, int]) -> int:
        offset = batch.get(partition, self.offsets.get(partition, -1)) + 1
        batch[partition] = offset
        return offset

    async def _movement(
        self,
        account_id: str,
        kind: str,
        amount: Decimal,
        at: datetime,
        counterparty: str | None,
        transfer_id: str | None,
        batch: dict[int, int],
    ) -> int:
        account = self.accounts[account_id]
        inflow = kind in ("DEPOSIT", "TRANSFER_IN")
        account.balance += amount if inflow else -amount
        account.version += 1
        assert account.balance >= 0, "the test wrote an overdraft"
        await self.connection.execute(
            "INSERT INTO movements VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)",
            uuid.uuid4(),
            account_id,
            account.version,
            kind,
            amount,
            account.balance,
            at,
            counterparty,
            transfer_id,
            f"cmd-{account_id}-{account.version}",
            account.partition,
            self._take(account.partition, batch),
        )
        await self.connection.execute(
            "UPDATE accounts SET balance = $2, version = $3, updated_at = $4 WHERE account_id = $1",
            account_id,
            account.balance,
            account.version,
            at,
        )
        await self.connection.execute(
            "INSERT INTO daily_summaries VALUES ($1, $2, $3, $4, $5, 1, $6) "
            "ON CONFLICT (account_id, day) DO UPDATE SET "
            "inflow = daily_summaries.inflow + excluded.inflow, "
            "outflow = daily_summaries.outflow + excluded.outflow, "
            "movement_count = daily_summaries.movement_count + 1, "
            "closing_balance = excluded.closing_balance",
            account_id,
            at.astimezone(UTC).date(),
            account.currency,
            amount if inflow else Decimal(0),
            Decimal(0) if inflow else amount,
            account.balance,
        )
        return account.version

    async def _checkpoint(self, batch: dict[int, int]) -> None:
        """As the projector ends each batch: checkpoints and NOTIFY in the same transaction."""
        for partition, offset in batch.items():
            await self.connection.execute(
                "INSERT INTO checkpoints VALUES ($1, $2, $3, clock_timestamp()) "
                "ON CONFLICT (topic, partition) DO UPDATE SET "
                "last_offset = excluded.last_offset, updated_at = excluded.updated_at",
                self.topic,
                partition,
                offset,
            )
        payload = {"topic": self.topic, "checkpoints": {str(p): o for p, o in batch.items()}}
        await self.connection.execute("SELECT pg_notify($1, $2)", CHANNEL, json.dumps(payload))


# --- Fixtures -------------------------------------------------------------------------------


async def _create_database(stack: LocalStack, *, migrate: bool) -> str:
    """A fresh database (with the read model's schema if `migrate`); returns its URL."""
    url = await create_database(stack, f"qs_{uuid.uuid4().hex[:12]}")
    if migrate:
        connection = await asyncpg.connect(url)
        try:
            await connection.execute("CREATE SCHEMA ledger")
            await connection.execute("SET search_path = ledger")
            for migration in sorted(MIGRATIONS.glob("*.sql")):
                await connection.execute(migration.read_text())
        finally:
            await connection.close()
    return url


@pytest.fixture(scope="module")
def topic(stack: LocalStack) -> str:
    """The module's event topic; it exists in Kafka (3 partitions) only for the watermarks."""
    name = f"qs_events_{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(name, 3, 1)])[name].result(timeout=30)
    return name


@pytest.fixture(scope="module")
async def database_url(stack: LocalStack) -> AsyncIterator[str]:
    url = await _create_database(stack, migrate=True)
    yield url
    await drop_database(stack, url)


@pytest.fixture(scope="module")
def query_server(
    stack: LocalStack, database_url: str, topic: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LedgerService]:
    service = LedgerService.query_server(
        stack,
        tmp_path_factory.mktemp("query-server"),
        topic=topic,
        database_url=database_url,
        # Keeps the test of a call without a deadline short.
        extra_env={"LEDGER_QUERY_DEFAULT_WAIT_SECONDS": "1"},
    )
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
async def client(query_server: LedgerService) -> AsyncIterator[pb_grpc.QueryServiceAsyncStub]:
    async with grpc.aio.insecure_channel(query_server.address) as channel:
        yield pb_grpc.QueryServiceStub(channel)


@pytest.fixture(scope="module")
async def writer(database_url: str, topic: str) -> AsyncIterator[ReadModelWriter]:
    connection = await asyncpg.connect(database_url, server_settings={"search_path": "ledger"})
    yield ReadModelWriter(connection, topic)
    await connection.close()


# --- Part A: every RPC against rows written as the projector writes them -------------------


async def test_serves_health_and_documented_reflection(query_server: LedgerService) -> None:
    async with grpc.aio.insecure_channel(query_server.address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="ledger.v1.QueryService")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="ledger.v1.QueryService"
        )
        async for answer in reflection.ServerReflectionInfo(iter([request])):
            files = answer.file_descriptor_response.file_descriptor_proto
            protos = [FileDescriptorProto.FromString(data) for data in files]
            comments = [
                location.leading_comments
                for proto in protos
                for location in proto.source_code_info.location
            ]
            assert any("Answers questions about accounts" in text for text in comments)
            break


async def test_get_account_formats_money_with_the_currencys_places(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    usd, jpy, kwd = _id("usd"), _id("jpy"), _id("kwd")
    await writer.open(usd, currency="USD", owner="Ada", at=T0)
    await writer.open(jpy, currency="JPY", at=T0)
    await writer.open(kwd, currency="KWD", at=T0)
    later = T0 + timedelta(hours=1)
    await writer.moves(
        [
            (usd, "DEPOSIT", "12.3", later, None, None),
            (jpy, "DEPOSIT", "5", later, None, None),
            (kwd, "DEPOSIT", "1.5", later, None, None),
        ]
    )
    answer = await client.GetAccount(pb.GetAccountRequest(account_id=usd))
    assert answer.account == pb.Account(
        account_id=usd,
        currency="USD",
        owner="Ada",
        status=pb.ACCOUNT_STATUS_OPEN,
        balance="12.30",
        version=2,
        opened_at=_ts(T0),
        updated_at=_ts(later),
    )
    assert ConsistencyToken.decode(answer.freshness.consistency_token) == ConsistencyToken(
        writer.offsets
    )
    assert answer.freshness.HasField("as_of")
    for account_id, balance in ((jpy, "5"), (kwd, "1.500")):
        reply = await client.GetAccount(pb.GetAccountRequest(account_id=account_id))
        assert reply.account.balance == balance


async def test_get_accounts_at_once_each_get_their_own_account(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    # Calls arriving while one is read are read together by one statement: every answer must
    # still be its own account, duplicates and unknown accounts included.
    known = [_id(f"many{n}") for n in range(12)]
    for n, account_id in enumerate(known):
        await writer.open(account_id, currency="EUR", owner=f"owner {n}", at=T0)
    unknown = _id("nobody")
    asked = [*known, known[3], unknown, *reversed(known), known[3], unknown]

    answers = await asyncio.gather(
        *(client.GetAccount(pb.GetAccountRequest(account_id=a)) for a in asked),
        return_exceptions=True,
    )

    for account_id, answer in zip(asked, answers, strict=True):
        if account_id == unknown:
            assert isinstance(answer, grpc.aio.AioRpcError)
            assert answer.code() == grpc.StatusCode.NOT_FOUND
        else:
            assert isinstance(answer, pb.GetAccountResponse)
            assert answer.account.account_id == account_id
            assert answer.account.owner == f"owner {known.index(account_id)}"


async def test_a_get_account_held_up_by_the_database_is_unavailable_not_stuck(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter, database_url: str
) -> None:
    account_id = _id("held")
    await writer.open(account_id, currency="EUR", owner="held", at=T0)
    blocker = await asyncpg.connect(database_url)
    try:
        async with blocker.transaction():
            # Reads of accounts wait for this lock: the statement runs past its timeout.
            await blocker.execute("LOCK TABLE ledger.accounts IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            code, details = await _code(
                client.GetAccount(pb.GetAccountRequest(account_id=account_id), timeout=20)
            )
            assert code == grpc.StatusCode.UNAVAILABLE
            assert "did not answer in time" in details
            assert time.monotonic() - started < 15, "waited for the pool's command timeout"
    finally:
        await blocker.close()
    reply = await client.GetAccount(pb.GetAccountRequest(account_id=account_id))
    assert reply.account.owner == "held"


async def test_list_accounts_returns_every_account_once_while_accounts_are_opened(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    prefix = _id("list")
    present = {f"{prefix}-{n:03d}" for n in range(0, 120, 2)}
    for account_id in sorted(present):
        await writer.open(account_id, currency="CHF")
    seen: list[str] = []
    opened_ahead: set[str] = set()
    token = ""
    for page_number in itertools.count():
        page = await client.ListAccounts(
            pb.ListAccountsRequest(page_size=7, page_token=token, currency="CHF")
        )
        seen += [account.account_id for account in page.accounts]
        if not page.next_page_token:
            break
        token = page.next_page_token
        cursor = page.accounts[-1].account_id
        # Open one account in the part already listed and one in the part still to come.
        for n in (page_number * 2 + 1, 119 - page_number * 2):
            account_id = f"{prefix}-{n:03d}"
            await writer.open(account_id, currency="CHF")
            if account_id > cursor:
                opened_ahead.add(account_id)
    assert seen == sorted(set(seen)), "ascending, each account once"
    # Pages continue after the last id seen: later accounts are included if they sort later.
    assert set(seen) == present | opened_ahead
    assert opened_ahead


async def test_list_accounts_filters_and_caps_pages(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    prefix = _id("filter")
    await writer.open(f"{prefix}-open", currency="SEK")
    await writer.open(f"{prefix}-closed", currency="SEK")
    await writer.close(f"{prefix}-closed", at=T0 + timedelta(minutes=1))
    await writer.open(f"{prefix}-nok", currency="NOK")

    async def ids(request: pb.ListAccountsRequest) -> list[str]:
        page = await client.ListAccounts(request)
        return [a.account_id for a in page.accounts if a.account_id.startswith(prefix)]

    assert await ids(pb.ListAccountsRequest(currency="SEK")) == [
        f"{prefix}-closed",
        f"{prefix}-open",
    ]
    assert await ids(pb.ListAccountsRequest(currency="SEK", status=pb.ACCOUNT_STATUS_CLOSED)) == [
        f"{prefix}-closed"
    ]
    assert await ids(pb.ListAccountsRequest(status=pb.ACCOUNT_STATUS_OPEN)) == [
        f"{prefix}-nok",
        f"{prefix}-open",
    ]
    everything = await client.ListAccounts(pb.ListAccountsRequest(page_size=100_000))
    assert len(everything.accounts) <= 500
    listed = [a.account_id for a in everything.accounts]
    assert listed == sorted(listed)

    first = await client.ListAccounts(pb.ListAccountsRequest(currency="SEK", page_size=1))
    assert first.next_page_token
    code, details = await _code(
        client.ListAccounts(
            pb.ListAccountsRequest(currency="NOK", page_size=1, page_token=first.next_page_token)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "different ListAccounts query" in details


async def test_list_transactions_pages_in_both_orders_while_movements_arrive(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    account, other = _id("tx"), _id("tx-other")
    await writer.open(account, currency="EUR", partition=1)
    await writer.open(other, currency="EUR", partition=1)
    at = T0 + timedelta(days=1)
    for n in range(1, 31):
        await writer.move(account, "DEPOSIT", f"{n}.5", at=at + timedelta(minutes=n))
    await writer.moves(
        [
            (account, "TRANSFER_OUT", "10", at + timedelta(hours=1), other, "tr-1"),
            (other, "TRANSFER_IN", "10", at + timedelta(hours=1), account, "tr-1"),
        ]
    )
    for order in (pb.SORT_ORDER_ASCENDING, pb.SORT_ORDER_DESCENDING):
        newest_at_start = writer.accounts[account].version
        versions: list[int] = []
        token = ""
        while True:
            page = await client.ListTransactions(
                pb.ListTransactionsRequest(
                    account_id=account, page_size=4, page_token=token, order=order
                )
            )
            versions += [t.version for t in page.transactions]
            if not page.next_page_token:
                break
            token = page.next_page_token
            # New movements land after the newest: ascending pages reach them, descending
            # pages (already past them) do not.
            await writer.move(account, "DEPOSIT", "1", at=at + timedelta(hours=2))
        if order == pb.SORT_ORDER_ASCENDING:
            assert versions == list(range(2, writer.accounts[account].version + 1))
        else:
            assert versions == list(range(newest_at_start, 1, -1))

    page = await client.ListTransactions(
        pb.ListTransactionsRequest(
            account_id=account,
            start_time=_ts(at + timedelta(minutes=2)),
            end_time=_ts(at + timedelta(hours=1)),
        )
    )
    assert [t.version for t in page.transactions] == list(range(3, 32))
    first = page.transactions[0]
    assert (first.kind, first.amount, first.currency, first.balance_after) == (
        pb.TRANSACTION_KIND_DEPOSIT,
        "2.50",
        "EUR",
        "4.00",
    )
    assert first.occurred_at == _ts(at + timedelta(minutes=2))
    transfer = await client.ListTransactions(
        pb.ListTransactionsRequest(account_id=other, order=pb.SORT_ORDER_DESCENDING, page_size=1)
    )
    (incoming,) = transfer.transactions
    assert (incoming.kind, incoming.counterparty_account_id, incoming.transfer_id) == (
        pb.TRANSACTION_KIND_TRANSFER_IN,
        account,
        "tr-1",
    )
    assert incoming.command_id
    assert uuid.UUID(incoming.event_id)


async def test_balance_at_equals_the_fold_of_the_movements(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    account = _id("fold")
    opened = T0 + timedelta(days=2)
    await writer.open(account, currency="GBP", at=opened)
    rng = random.Random(7)
    history: list[tuple[datetime, int, Decimal]] = []  # (time, version, balance after)
    moment = opened
    for _ in range(25):
        # Some movements share an instant with the previous one.
        moment += timedelta(milliseconds=rng.choice([0, 1, 250, 60_000]))
        balance = writer.accounts[account].balance
        if balance >= 5 and rng.random() < 0.4:
            version = await writer.move(account, "WITHDRAWAL", "5", at=moment)
        else:
            version = await writer.move(account, "DEPOSIT", f"{rng.randint(1, 900)}.25", at=moment)
        history.append((moment, version, writer.accounts[account].balance))
    closing_time = moment + timedelta(seconds=1)
    await writer.move(account, "WITHDRAWAL", str(writer.accounts[account].balance), at=closing_time)
    history.append((closing_time, writer.accounts[account].version, Decimal(0)))
    closed_at = closing_time + timedelta(minutes=1)
    closed_version = await writer.close(account, at=closed_at)

    def fold(at: datetime) -> tuple[str, int]:
        balance, version = Decimal(0), 1
        for when, movement_version, after in history:
            if when <= at:
                balance, version = after, movement_version
        if closed_at <= at:
            version = closed_version
        return f"{balance:.2f}", version

    probes = {opened, closed_at, closed_at + timedelta(days=1)}
    for when, _, _ in history:
        probes |= {when, when - timedelta(microseconds=1), when + timedelta(microseconds=1)}
    for at in sorted(probes):
        answer = await client.GetBalanceAt(pb.GetBalanceAtRequest(account_id=account, at=_ts(at)))
        assert (answer.balance, answer.version) == fold(at), at
        assert answer.currency == "GBP"
    code, details = await _code(
        client.GetBalanceAt(
            pb.GetBalanceAtRequest(account_id=account, at=_ts(opened - timedelta(microseconds=1)))
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert "did not exist" in details


async def test_daily_summaries_of_an_account_and_of_the_ledger(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    first, second = _id("day-a"), _id("day-b")
    day1 = datetime(2031, 5, 31, 22, 0, tzinfo=UTC)
    await writer.open(first, currency="USD", at=day1)
    await writer.open(second, currency="JPY", at=day1)
    await writer.move(first, "DEPOSIT", "100", at=day1)
    await writer.move(first, "WITHDRAWAL", "0.5", at=day1 + timedelta(hours=1, minutes=59))
    await writer.move(second, "DEPOSIT", "700", at=day1 + timedelta(hours=2))  # June 1st
    await writer.move(first, "DEPOSIT", "1.25", at=day1 + timedelta(days=2))
    answer = await client.GetDailySummaries(
        pb.GetDailySummariesRequest(
            account_id=first,
            first_day=_date(date(2031, 5, 31)),
            last_day=_date(date(2031, 6, 30)),
        )
    )
    assert [(s.day.month, s.day.day) for s in answer.summaries] == [(5, 31), (6, 2)]
    may = answer.summaries[0]
    assert (may.inflow, may.outflow, may.movement_count, may.closing_balance) == (
        "100.00",
        "0.50",
        2,
        "99.50",
    )
    assert answer.summaries[1].closing_balance == "100.75"

    rows: list[tuple[int, str]] = []
    token = ""
    while True:
        page = await client.GetDailySummaries(
            pb.GetDailySummariesRequest(
                first_day=_date(date(2031, 5, 1)),
                last_day=_date(date(2031, 6, 2)),
                page_size=1,
                page_token=token,
            )
        )
        rows += [(s.day.day, s.account_id) for s in page.summaries]
        token = page.next_page_token
        if not token:
            break
    assert rows == [(31, first), (1, second), (2, first)]
    june = await client.GetDailySummaries(
        pb.GetDailySummariesRequest(
            account_id=second, first_day=_date(date(2031, 6, 1)), last_day=_date(date(2031, 6, 1))
        )
    )
    assert [(s.currency, s.inflow, s.outflow) for s in june.summaries] == [("JPY", "700", "0")]


async def test_projection_status_reports_checkpoints_and_lag(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter, stack: LocalStack, topic: str
) -> None:
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for _ in range(3):
        producer.produce(topic, b"x", partition=2)
    assert producer.flush(10) == 0
    await writer.touch(0)
    deadline = time.monotonic() + PROMPTLY_S
    while True:
        status = await client.GetProjectionStatus(pb.GetProjectionStatusRequest())
        by_partition = {p.partition: p for p in status.partitions}
        if by_partition.get(2) and by_partition[2].HasField("high_watermark"):
            break
        assert time.monotonic() < deadline, f"no watermarks observed: {status}"
    assert [p.partition for p in status.partitions] == [0, 1, 2]
    for partition in status.partitions:
        assert partition.checkpoint_offset == writer.offsets.get(partition.partition, -1)
        assert partition.lag == max(0, partition.high_watermark - (partition.checkpoint_offset + 1))
    assert by_partition[2].high_watermark == 3
    assert by_partition[0].HasField("updated_at")
    assert not by_partition[2].HasField("updated_at") or 2 in writer.offsets
    assert ConsistencyToken.decode(status.freshness.consistency_token) == ConsistencyToken(
        writer.offsets
    )


@pytest.mark.parametrize(
    ("rpc", "request_", "mentions"),
    [
        ("GetAccount", pb.GetAccountRequest(account_id="bad id"), "account_id"),
        ("GetAccount", pb.GetAccountRequest(), "account_id"),
        ("GetAccount", pb.GetAccountRequest(account_id="a", consistency_token="x"), "token"),
        ("GetAccount", pb.GetAccountRequest(account_id="a", consistency_token="v1.!"), "token"),
        ("ListAccounts", pb.ListAccountsRequest(page_size=-1), "page_size"),
        ("ListAccounts", pb.ListAccountsRequest(page_token="garbage"), "page_token"),
        ("ListAccounts", pb.ListAccountsRequest(currency="ZZZ"), "currency"),
        (
            "ListTransactions",
            pb.ListTransactionsRequest(
                account_id="a", start_time=Timestamp(seconds=20), end_time=Timestamp(seconds=10)
            ),
            "start_time",
        ),
        (
            "ListTransactions",
            pb.ListTransactionsRequest(account_id="a", page_token="eyJ2IjoxfQ"),
            "page_token",
        ),
        ("GetBalanceAt", pb.GetBalanceAtRequest(account_id="a"), "at is required"),
        (
            "GetDailySummaries",
            pb.GetDailySummariesRequest(
                first_day=pb.Date(year=2024, month=2, day=2),
                last_day=pb.Date(year=2024, month=2, day=1),
            ),
            "first_day",
        ),
        (
            "GetDailySummaries",
            pb.GetDailySummariesRequest(
                first_day=pb.Date(year=2024, month=2, day=30),
                last_day=pb.Date(year=2024, month=3, day=1),
            ),
            "calendar date",
        ),
        ("GetProjectionStatus", pb.GetProjectionStatusRequest(consistency_token="v2."), "token"),
    ],
)
async def test_malformed_requests_are_invalid_argument(
    client: pb_grpc.QueryServiceAsyncStub, rpc: str, request_: Any, mentions: str
) -> None:
    code, details = await _code(getattr(client, rpc)(request_))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert mentions in details


async def test_malformed_watch_requests_are_invalid_argument(
    client: pb_grpc.QueryServiceAsyncStub,
) -> None:
    stream = client.WatchAccount(pb.WatchAccountRequest(account_id="no spaces please"))
    code, details = await _code(stream.read())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "account_id" in details


async def test_unknown_accounts_are_not_found(client: pb_grpc.QueryServiceAsyncStub) -> None:
    unknown = _id("nobody")
    day = pb.Date(year=2024, month=1, day=1)
    calls = [
        client.GetAccount(pb.GetAccountRequest(account_id=unknown)),
        client.ListTransactions(pb.ListTransactionsRequest(account_id=unknown)),
        client.GetBalanceAt(pb.GetBalanceAtRequest(account_id=unknown, at=_ts(T0))),
        client.GetDailySummaries(
            pb.GetDailySummariesRequest(account_id=unknown, first_day=day, last_day=day)
        ),
        client.WatchAccount(pb.WatchAccountRequest(account_id=unknown)).read(),
    ]
    for call in calls:
        code, details = await _code(call)
        assert code == grpc.StatusCode.NOT_FOUND
        assert unknown in details


async def test_a_token_ahead_of_the_read_model_waits_for_the_projector(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    account = _id("ryw")
    await writer.open(account, partition=2)
    # The token of the deposit below, two events ahead of the read model.
    ahead = writer.token_of_next(2).positions[2] + 1
    token = ConsistencyToken({**writer.offsets, 2: ahead}).encode()
    day = pb.Date(year=T0.year, month=T0.month, day=T0.day)
    calls: dict[str, Awaitable[Any]] = {
        "GetAccount": client.GetAccount(
            pb.GetAccountRequest(account_id=account, consistency_token=token), timeout=20
        ),
        "ListAccounts": client.ListAccounts(
            pb.ListAccountsRequest(consistency_token=token, currency="USD"), timeout=20
        ),
        "ListTransactions": client.ListTransactions(
            pb.ListTransactionsRequest(account_id=account, consistency_token=token), timeout=20
        ),
        "GetBalanceAt": client.GetBalanceAt(
            pb.GetBalanceAtRequest(
                account_id=account, at=_ts(T0 + timedelta(days=1)), consistency_token=token
            ),
            timeout=20,
        ),
        "GetDailySummaries": client.GetDailySummaries(
            pb.GetDailySummariesRequest(
                account_id=account, first_day=day, last_day=day, consistency_token=token
            ),
            timeout=20,
        ),
        "GetProjectionStatus": client.GetProjectionStatus(
            pb.GetProjectionStatusRequest(consistency_token=token), timeout=20
        ),
    }
    pending = {name: asyncio.ensure_future(call) for name, call in calls.items()}
    # One event short of the token: every call must still be waiting.
    await writer.touch(2)
    done, _ = await asyncio.wait(pending.values(), timeout=0.5)
    assert not done, "answered before the read model covered the token"
    await writer.move(account, "DEPOSIT", "7.00", at=T0 + timedelta(minutes=5))
    answers = {name: await asyncio.wait_for(call, PROMPTLY_S) for name, call in pending.items()}

    account_answer = answers["GetAccount"]
    assert isinstance(account_answer, pb.GetAccountResponse)
    assert account_answer.account.balance == "7.00"
    assert isinstance(answers["ListTransactions"], pb.ListTransactionsResponse)
    assert [t.amount for t in answers["ListTransactions"].transactions] == ["7.00"]
    assert isinstance(answers["GetBalanceAt"], pb.GetBalanceAtResponse)
    assert answers["GetBalanceAt"].balance == "7.00"
    assert isinstance(answers["GetDailySummaries"], pb.GetDailySummariesResponse)
    assert [s.inflow for s in answers["GetDailySummaries"].summaries] == ["7.00"]
    for answer in answers.values():
        freshness = answer.freshness
        covered = ConsistencyToken.decode(freshness.consistency_token).positions
        assert ConsistencyToken.decode(token).covered_by(covered)


async def test_a_token_never_covered_fails_with_deadline_exceeded(
    client: pb_grpc.QueryServiceAsyncStub,
) -> None:
    token = ConsistencyToken.at(0, 10**12).encode()
    started = time.monotonic()
    code, _ = await _code(
        client.GetAccount(pb.GetAccountRequest(account_id="a", consistency_token=token), timeout=1)
    )
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5
    # Without a deadline the server's own cap applies (1 s in this module), with an explanation.
    code, details = await _code(
        client.GetAccount(pb.GetAccountRequest(account_id="a", consistency_token=token))
    )
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "did not reach the consistency token" in details
    assert "partition 0" in details


async def _next(stream: Any) -> pb.WatchAccountResponse:
    message = await asyncio.wait_for(stream.read(), PROMPTLY_S)
    assert message is not grpc.aio.EOF, "the stream ended early"
    assert isinstance(message, pb.WatchAccountResponse)
    return message


async def test_watch_account_streams_every_change_in_order(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    account, neighbour = _id("watch"), _id("watch-n")
    await writer.open(account, currency="EUR", owner="Wat", partition=1)
    await writer.open(neighbour, currency="EUR", partition=1)
    at = T0 + timedelta(days=3)
    await writer.move(account, "DEPOSIT", "10", at=at)

    stream = client.WatchAccount(pb.WatchAccountRequest(account_id=account))
    first = await _next(stream)
    assert (first.account.version, first.account.balance) == (2, "10.00")
    assert not first.HasField("transaction")

    await writer.move(account, "DEPOSIT", "5", at=at + timedelta(seconds=1))
    await writer.touch(1)  # other accounts of the partition: nothing to send
    await writer.move(neighbour, "DEPOSIT", "1", at=at + timedelta(seconds=2))
    await writer.moves(  # one batch, several changes of the account
        [
            (account, "WITHDRAWAL", "3", at + timedelta(seconds=3), None, None),
            (account, "TRANSFER_OUT", "12", at + timedelta(seconds=4), neighbour, "t-9"),
            (neighbour, "TRANSFER_IN", "12", at + timedelta(seconds=4), account, "t-9"),
        ]
    )
    await writer.close(account, at=at + timedelta(seconds=5))

    updates = [await _next(stream) for _ in range(4)]
    assert [(u.account.version, u.account.balance, u.account.status) for u in updates] == [
        (3, "15.00", pb.ACCOUNT_STATUS_OPEN),
        (4, "12.00", pb.ACCOUNT_STATUS_OPEN),
        (5, "0.00", pb.ACCOUNT_STATUS_OPEN),
        (6, "0.00", pb.ACCOUNT_STATUS_CLOSED),
    ]
    assert [u.transaction.kind for u in updates[:3]] == [
        pb.TRANSACTION_KIND_DEPOSIT,
        pb.TRANSACTION_KIND_WITHDRAWAL,
        pb.TRANSACTION_KIND_TRANSFER_OUT,
    ]
    assert [u.transaction.version for u in updates[:3]] == [3, 4, 5]
    assert updates[0].account.updated_at == _ts(at + timedelta(seconds=1))
    assert not updates[3].HasField("transaction"), "closing moves no money"
    assert updates[3].account.owner == "Wat"
    assert await asyncio.wait_for(stream.read(), PROMPTLY_S) is grpc.aio.EOF
    assert await stream.code() == grpc.StatusCode.OK


async def test_watch_account_from_a_consistency_token(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    account = _id("watch-token")
    await writer.open(account, partition=0)
    token = writer.token_of_next(0).merge(ConsistencyToken(writer.offsets)).encode()
    stream = client.WatchAccount(
        pb.WatchAccountRequest(account_id=account, consistency_token=token)
    )
    first_read = asyncio.ensure_future(stream.read())
    done, _ = await asyncio.wait([first_read], timeout=0.3)
    assert not done, "the first message must wait for the token"
    await writer.move(account, "DEPOSIT", "2", at=T0 + timedelta(seconds=1))
    first = await asyncio.wait_for(first_read, PROMPTLY_S)
    assert isinstance(first, pb.WatchAccountResponse)
    assert (first.account.version, first.account.balance) == (2, "2.00")
    await writer.move(account, "DEPOSIT", "3", at=T0 + timedelta(seconds=2))
    second = await _next(stream)
    assert (second.transaction.amount, second.account.balance) == ("3.00", "5.00")
    stream.cancel()


async def test_stopping_ends_watches_promptly_with_unavailable(
    stack: LocalStack,
    database_url: str,
    topic: str,
    writer: ReadModelWriter,
    tmp_path: Path,
) -> None:
    account = _id("stop")
    await writer.open(account)
    service = LedgerService.query_server(stack, tmp_path, topic=topic, database_url=database_url)
    service.start()
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stream = pb_grpc.QueryServiceStub(channel).WatchAccount(
                pb.WatchAccountRequest(account_id=account)
            )
            await _next(stream)
            await asyncio.to_thread(service.stop)
            code, details = await _code(asyncio.wait_for(stream.read(), PROMPTLY_S))
            assert code == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in details
    finally:
        service.stop()


async def test_an_unreachable_read_model_is_unavailable(
    stack: LocalStack, topic: str, tmp_path: Path
) -> None:
    url = await _create_database(stack, migrate=True)
    unreachable_kafka = f"127.0.0.1:{free_port()}"
    service = LedgerService.query_server(
        stack,
        tmp_path,
        topic=topic,
        database_url=url,
        extra_env={"LEDGER_KAFKA_BOOTSTRAP_SERVERS": unreachable_kafka},
    )
    service.start()
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            client = pb_grpc.QueryServiceStub(channel)
            status = await client.GetProjectionStatus(pb.GetProjectionStatusRequest())
            assert all(not p.HasField("lag") for p in status.partitions), "lag is unknown"
            await drop_database(stack, url)
            code, details = await _code(client.GetAccount(pb.GetAccountRequest(account_id="a")))
            assert code == grpc.StatusCode.UNAVAILABLE
            assert "read model" in details
            health = health_pb2_grpc.HealthStub(channel)
            deadline = time.monotonic() + PROMPTLY_S
            while (await health.Check(health_pb2.HealthCheckRequest())).status == (
                health_pb2.HealthCheckResponse.SERVING
            ):
                assert time.monotonic() < deadline, "still SERVING without its database"
                await asyncio.sleep(0.05)
    finally:
        service.stop()
        await drop_database(stack, url)


async def test_answers_unavailable_until_the_database_is_reachable(
    stack: LocalStack, tmp_path: Path
) -> None:
    service = LedgerService.query_server(
        stack, tmp_path, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/ledger"
    )
    service.launch()
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            client = pb_grpc.QueryServiceStub(channel)
            deadline = time.monotonic() + PROMPTLY_S
            while True:
                code, details = await _code(
                    client.GetAccount(pb.GetAccountRequest(account_id="a"), timeout=2)
                )
                assert code == grpc.StatusCode.UNAVAILABLE
                if "still connecting to the read model" in details:
                    break
                assert time.monotonic() < deadline, details
                await asyncio.sleep(0.05)
    finally:
        service.stop()
    assert service.wait_exit(10) == 0


# --- Part B: command server, projector and query server as real processes ------------------

needs_projector = pytest.mark.skipif(
    not hasattr(LedgerService, "projector"), reason="LedgerService.projector is not available"
)


@dataclass(frozen=True)
class EndToEnd:
    commands: cmd_grpc.CommandServiceAsyncStub
    queries: pb_grpc.QueryServiceAsyncStub


@pytest.fixture(scope="module")
async def end_to_end(
    stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[EndToEnd]:
    data_dir = tmp_path_factory.mktemp("end-to-end")
    events = f"e2e_events_{uuid.uuid4().hex[:8]}"
    ensure_event_topic(AdminClient({"bootstrap.servers": stack.kafka_bootstrap}), events, 6)
    url = await _create_database(stack, migrate=False)  # the projector migrates it
    command_server = LedgerService.command_server(stack, data_dir, topic=events)
    projector = LedgerService.projector(
        stack, data_dir, topic=events, extra_env={"LEDGER_DATABASE_URL": url}
    )
    query_server = LedgerService.query_server(stack, data_dir, topic=events, database_url=url)
    started: list[LedgerService] = []
    try:
        for service in (command_server, projector, query_server):
            service.start()
            started.append(service)
        async with (
            grpc.aio.insecure_channel(command_server.address) as command_channel,
            grpc.aio.insecure_channel(query_server.address) as query_channel,
        ):
            yield EndToEnd(
                cmd_grpc.CommandServiceStub(command_channel),
                pb_grpc.QueryServiceStub(query_channel),
            )
    finally:
        for service in reversed(started):
            service.stop()
        await drop_database(stack, url)


async def _open_account(end_to_end: EndToEnd, currency: str = "EUR") -> tuple[str, str]:
    account = _id("e2e")
    opened = await end_to_end.commands.OpenAccount(
        cmd.OpenAccountRequest(
            command_id=_id("c"), account_id=account, currency=currency, owner="E2E"
        )
    )
    return account, opened.consistency_token


@needs_projector
async def test_reads_its_own_writes_every_time(end_to_end: EndToEnd) -> None:
    account, token = await _open_account(end_to_end)
    opened = await end_to_end.queries.GetAccount(
        pb.GetAccountRequest(account_id=account, consistency_token=token), timeout=10
    )
    assert (opened.account.version, opened.account.balance) == (1, "0.00")
    balance = Decimal(0)
    for n in range(100):
        if n % 3 == 2:
            reply: Any = await end_to_end.commands.Withdraw(
                cmd.WithdrawRequest(command_id=_id("c"), account_id=account, amount="1.25")
            )
            balance -= Decimal("1.25")
        else:
            reply = await end_to_end.commands.Deposit(
                cmd.DepositRequest(command_id=_id("c"), account_id=account, amount="2.50")
            )
            balance += Decimal("2.50")
        answer = await end_to_end.queries.GetAccount(
            pb.GetAccountRequest(account_id=account, consistency_token=reply.consistency_token),
            timeout=10,
        )
        assert (answer.account.version, answer.account.balance) == (reply.version, f"{balance}")
        covered = ConsistencyToken.decode(answer.freshness.consistency_token).positions
        assert ConsistencyToken.decode(reply.consistency_token).covered_by(covered)
    history = await end_to_end.queries.ListTransactions(
        pb.ListTransactionsRequest(account_id=account, page_size=1000)
    )
    assert [t.version for t in history.transactions] == list(range(2, 102))


@needs_projector
async def test_watch_follows_every_command_on_the_account(end_to_end: EndToEnd) -> None:
    account, token = await _open_account(end_to_end)
    other, _ = await _open_account(end_to_end)
    stream = end_to_end.queries.WatchAccount(
        pb.WatchAccountRequest(account_id=account, consistency_token=token)
    )
    first = await _next(stream)
    assert (first.account.version, first.account.balance) == (1, "0.00")

    commands = end_to_end.commands
    await commands.Deposit(
        cmd.DepositRequest(command_id=_id("c"), account_id=account, amount="100")
    )
    await commands.Withdraw(
        cmd.WithdrawRequest(command_id=_id("c"), account_id=account, amount="30")
    )
    await commands.Deposit(cmd.DepositRequest(command_id=_id("c"), account_id=other, amount="1"))
    await commands.Transfer(
        cmd.TransferRequest(
            command_id=_id("c"), from_account_id=account, to_account_id=other, amount="20"
        )
    )
    await commands.Deposit(
        cmd.DepositRequest(command_id=_id("c"), account_id=account, amount="0.05")
    )
    await commands.Withdraw(
        cmd.WithdrawRequest(command_id=_id("c"), account_id=account, amount="50.05")
    )
    await commands.CloseAccount(cmd.CloseAccountRequest(command_id=_id("c"), account_id=account))

    updates = []
    while (message := await asyncio.wait_for(stream.read(), PROMPTLY_S)) is not grpc.aio.EOF:
        assert isinstance(message, pb.WatchAccountResponse)
        updates.append(message)
    assert [
        (u.account.version, u.account.balance, u.transaction.kind, u.account.status)
        for u in updates
    ] == [
        (2, "100.00", pb.TRANSACTION_KIND_DEPOSIT, pb.ACCOUNT_STATUS_OPEN),
        (3, "70.00", pb.TRANSACTION_KIND_WITHDRAWAL, pb.ACCOUNT_STATUS_OPEN),
        (4, "50.00", pb.TRANSACTION_KIND_TRANSFER_OUT, pb.ACCOUNT_STATUS_OPEN),
        (5, "50.05", pb.TRANSACTION_KIND_DEPOSIT, pb.ACCOUNT_STATUS_OPEN),
        (6, "0.00", pb.TRANSACTION_KIND_WITHDRAWAL, pb.ACCOUNT_STATUS_OPEN),
        (7, "0.00", pb.TRANSACTION_KIND_UNSPECIFIED, pb.ACCOUNT_STATUS_CLOSED),
    ]
    assert updates[2].transaction.counterparty_account_id == other
