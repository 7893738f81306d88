"""The read model as PostgreSQL holds it: waiting for the projector to catch up, then reading it.

Rows are turned into the same canonical tuples the fold of the log produces (money in integer
minor units, times in ISO 8601 UTC), so that the two can be compared row for row.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from ledger.domain.money import currency_exponent

SCHEMA = "ledger"

AccountRow = tuple[str, str, str, str, int, int, int, str, str | None, str]
"""account_id, currency, owner, status, balance, version, partition, opened_at, closed_at,
updated_at"""
MovementRow = tuple[str, str, int, str, int, int, str, str | None, str | None, str, int, int]
"""event_id, account_id, version, kind, amount, balance_after, occurred_at, counterparty_id,
transfer_id, command_id, partition, offset"""
DayRow = tuple[str, str, str, int, int, int, int]
"""account_id, day, currency, inflow, outflow, movement_count, closing_balance"""
TransferRow = tuple[str, str, str, str, int, bool | None, str]
"""transfer_id, from_account_id, to_account_id, currency, amount, cross_shard, state"""


class NotCaughtUp(RuntimeError):
    """The projector's checkpoints did not reach the end of the log in time."""


@dataclass(frozen=True, slots=True)
class Snapshot:
    accounts: list[AccountRow]
    movements: list[MovementRow]
    days: list[DayRow]
    checkpoints: dict[int, int]
    dead_letters: int
    transfers: list[TransferRow] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    """Per currency, money in flight (currency_totals: transferred out less transferred in)."""


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds")


def minor(amount: Decimal, currency: str) -> int:
    """NUMERIC major units as integer minor units; refuses more places than the currency has."""
    scaled = amount.scaleb(currency_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{amount} has more decimal places than {currency} allows")
    return int(scaled)


async def connect(url: str, *, deadline_s: float = 60) -> Any:
    """A connection once PostgreSQL accepts one (it may just have restarted)."""
    end = time.monotonic() + deadline_s
    while True:
        try:
            return await asyncpg.connect(url, server_settings={"search_path": SCHEMA})
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            if time.monotonic() > end:
                raise
            await asyncio.sleep(0.5)


async def checkpoints(connection: Any, topic: str) -> dict[int, int]:
    rows = await connection.fetch(
        "SELECT partition, last_offset FROM checkpoints WHERE topic = $1", topic
    )
    return {row["partition"]: row["last_offset"] for row in rows}


async def wait_caught_up(
    url: str, topic: str, last_offsets: Mapping[int, int], *, deadline_s: float
) -> float:
    """Wait until the checkpoint of every partition covers its last record; returns seconds."""
    started = time.monotonic()
    end = started + deadline_s
    seen: dict[int, int] = {}
    while True:
        try:
            connection = await connect(url, deadline_s=max(1.0, end - time.monotonic()))
            try:
                seen = await checkpoints(connection, topic)
            finally:
                await connection.close()
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass
        behind = {p: o for p, o in last_offsets.items() if seen.get(p, -1) < o}
        if not behind:
            return time.monotonic() - started
        if time.monotonic() > end:
            raise NotCaughtUp(
                f"the projector did not catch up within {deadline_s:.0f}s: last offsets "
                f"{dict(sorted(behind.items()))}, checkpoints {dict(sorted(seen.items()))}"
            )
        await asyncio.sleep(0.25)


async def snapshot(url: str, topic: str) -> Snapshot:
    connection = await connect(url)
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            accounts = await connection.fetch(
                "SELECT account_id, currency, owner, status, balance, version, partition, "
                "opened_at, closed_at, updated_at FROM accounts"
            )
            movements = await connection.fetch(
                "SELECT m.event_id::text AS event_id, m.account_id, m.version, m.kind, m.amount, "
                "m.balance_after, m.occurred_at, m.counterparty_id, m.transfer_id, m.command_id, "
                'm.partition, m."offset", a.currency '
                "FROM movements m JOIN accounts a USING (account_id)"
            )
            days = await connection.fetch(
                "SELECT account_id, day, currency, inflow, outflow, movement_count, "
                "closing_balance FROM daily_summaries"
            )
            transfers = await connection.fetch(
                "SELECT transfer_id, from_account_id, to_account_id, currency, amount, "
                "cross_shard, CASE WHEN refunded_at IS NOT NULL THEN 'REFUNDED' "
                "WHEN credited_at IS NOT NULL THEN 'COMPLETED' ELSE 'PENDING' END AS state "
                "FROM transfers"
            )
            in_flight = await connection.fetch(
                "SELECT currency, sum(transferred_out) - sum(transferred_in) AS in_flight "
                "FROM currency_totals WHERE width = 'day' GROUP BY currency"
            )
            seen = await checkpoints(connection, topic)
            dead = await connection.fetchval(
                "SELECT count(*) FROM dead_letters WHERE topic = $1", topic
            )
    finally:
        await connection.close()
    return Snapshot(
        accounts=[_account(row) for row in accounts],
        movements=[_movement(row) for row in movements],
        days=[_day(row) for row in days],
        checkpoints=seen,
        dead_letters=int(dead),
        transfers=[
            (
                row["transfer_id"],
                row["from_account_id"],
                row["to_account_id"],
                row["currency"],
                minor(row["amount"], row["currency"]),
                row["cross_shard"],
                row["state"],
            )
            for row in transfers
        ],
        in_flight={row["currency"]: minor(row["in_flight"], row["currency"]) for row in in_flight},
    )


def _account(row: Any) -> AccountRow:
    currency = row["currency"]
    closed_at = row["closed_at"]
    return (
        row["account_id"],
        currency,
        row["owner"],
        row["status"],
        minor(row["balance"], currency),
        row["version"],
        row["partition"],
        iso(row["opened_at"]),
        None if closed_at is None else iso(closed_at),
        iso(row["updated_at"]),
    )


def _movement(row: Any) -> MovementRow:
    currency = row["currency"]
    return (
        row["event_id"],
        row["account_id"],
        row["version"],
        row["kind"],
        minor(row["amount"], currency),
        minor(row["balance_after"], currency),
        iso(row["occurred_at"]),
        row["counterparty_id"],
        row["transfer_id"],
        row["command_id"],
        row["partition"],
        row["offset"],
    )


def _day(row: Any) -> DayRow:
    currency = row["currency"]
    day: date = row["day"]
    return (
        row["account_id"],
        day.isoformat(),
        currency,
        minor(row["inflow"], currency),
        minor(row["outflow"], currency),
        row["movement_count"],
        minor(row["closing_balance"], currency),
    )
