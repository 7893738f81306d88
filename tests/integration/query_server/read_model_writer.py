"""What the query server's tests share: a stand-in for the projector and small helpers.

ReadModelWriter writes the read model exactly as the projector does (rows, checkpoints and a
NOTIFY on `ledger_checkpoints` in one transaction per batch), so that every RPC is tested
without Kafka in the loop.
"""

from __future__ import annotations

import asyncio
import json
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from devstack.databases import create_database
from devstack.stack import LocalStack
from ledger.consistency import ConsistencyToken
from ledger.v1 import queries_pb2 as pb

MIGRATIONS = Path(__file__).resolve().parents[3] / "projector" / "migrations"
CHANNEL = "ledger_checkpoints"
T0 = datetime(2024, 3, 1, 9, 0, tzinfo=UTC)
# Deadline for anything that should happen promptly; polling loops give up after it.
PROMPTLY_S = 10.0


def unique_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def proto_date(day: date) -> pb.Date:
    return pb.Date(year=day.year, month=day.month, day=day.day)


async def failure_of(call: Any) -> tuple[grpc.StatusCode, str]:
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


async def create_read_model_database(stack: LocalStack, *, migrate: bool) -> str:
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


async def next_update(stream: Any) -> pb.WatchAccountResponse:
    message = await asyncio.wait_for(stream.read(), PROMPTLY_S)
    assert message is not grpc.aio.EOF, "the stream ended early"
    assert isinstance(message, pb.WatchAccountResponse)
    return message
