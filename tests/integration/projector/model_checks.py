"""What a projected read model must hold, and how the projector's tests read it."""

import json
import subprocess
import sys
import urllib.request
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from devstack.ledger_services import LedgerService
from devstack.process import clean_environment
from devstack.stack import LocalStack
from ledger.domain.account import Account
from ledger.domain.decider import evolve
from ledger.domain.money import currency_exponent
from ledger.events.records import (
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCredited,
    TransferDebited,
    TransferRefunded,
    TransferSent,
)
from projector.batch import apply_batch
from projector.consumed import ConsumedRecord
from projector.migrations import bundled, migrate
from tests.eventually import eventually_async
from tests.integration.projector.event_log import Logged, cut

DEADLINE_S = 60.0
MOVEMENTS = (
    MoneyDeposited,
    MoneyWithdrawn,
    TransferDebited,
    TransferCredited,
    TransferSent,
    TransferRefunded,
)
# Columns that say when a row was written rather than what it holds.
COMPARED = {
    "accounts": ("*", "account_id"),
    "movements": ("*", "account_id, version"),
    "daily_summaries": ("*", "account_id, day"),
    "currency_totals": ("*", "width, period_start, currency, partition"),
    "transfers": ("*", "transfer_id"),
    "checkpoints": ("topic, partition, last_offset", "topic, partition"),
    "dead_letters": ('topic, partition, "offset", error', 'topic, partition, "offset"'),
}


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


async def caught_up(connection: Any, topic: str, last: dict[int, int]) -> None:
    async def covered() -> bool:
        try:
            done = await checkpoints(connection, topic)
        except asyncpg.UndefinedTableError:
            return False
        return all(done.get(p, -1) >= offset for p, offset in last.items())

    await eventually_async(covered, timeout=DEADLINE_S, message=f"checkpoints {last}")


def status(service: LedgerService | str) -> dict[str, Any]:
    """The /status of a projector, or of the one serving it at an address."""
    address = service if isinstance(service, str) else service.address
    with urllib.request.urlopen(f"http://{address}/status", timeout=5) as reply:
        document: dict[str, Any] = json.load(reply)
        return document


async def reference(database: str, topic: str, records: Sequence[ConsumedRecord]) -> Any:
    """The tables as batches projected from the database alone make them."""
    alone = await asyncpg.connect(database, server_settings={"search_path": "reference"})
    try:
        await migrate(alone, "reference", bundled())
        for batch in cut(records, 1000):
            await apply_batch(alone, topic, batch)
        return await snapshot(alone, "reference")
    finally:
        await alone.close()


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


def applied(report: dict[str, Any], last: dict[int, int]) -> bool:
    partitions = report["partitions"]
    return all(
        (partitions.get(str(p)) or {}).get("checkpoint") is not None
        and partitions[str(p)]["checkpoint"] >= offset
        for p, offset in last.items()
    )


def assigned(projector: LedgerService, partitions: int) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        report = status(projector)
        return len(report["partitions"]) == partitions and all(
            p["lag"] == 0 for p in report["partitions"].values()
        )

    return check


async def split_between(projectors: Sequence[LedgerService | str], partitions: int) -> None:
    """Wait until the projectors (or the ones serving these addresses) each own some of the
    topic's `partitions`, no partition twice, all of them together."""

    async def split() -> bool:
        try:
            owned = [set(status(projector)["partitions"]) for projector in projectors]
        except OSError:
            return False  # an endpoint is not up yet
        every = set().union(*owned)
        return all(owned) and len(every) == partitions == sum(len(mine) for mine in owned)

    await eventually_async(split, timeout=DEADLINE_S, message="the partitions to be split")
