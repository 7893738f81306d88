"""`python bench/live_apply_costs.py [--sizes 100,600,2000,5000] [--rounds N]`: what one live
batch of the sustained scenario's shape costs to apply, through the projector's own path.

A PostgreSQL of its own (devstack, in a temporary directory), a fresh database migrated as the
projector does, 10,000 accounts opened over 6 partitions, then a warm-up of `--warmup` random
Deposits (the read model a minute into the sustained run is no longer fresh: its tables and
indexes hold hundreds of thousands of row versions), then rounds of batches of each size: random
Deposits over the 10,000 accounts, in log order per partition, predicted from an `AccountView` as
the live projector does (prediction.py) and applied with `apply_predicted`. Reports the median
milliseconds per batch and microseconds per event of the transaction (`apply`), and of the
prediction (`predict`, the consumer thread's part, outside the transaction).

Run as a file it measures whichever tree's `projector` comes first on the path (`PYTHONPATH=
/work/main python bench/live_apply_costs.py` measures main's), migrations included.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import tempfile
import time
import uuid
from collections.abc import Coroutine
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from devstack.ports import free_port
from devstack.postgres import Postgres
from ledger.events.records import AccountOpened, MoneyDeposited, event_id_for
from ledger.partitioning import partition_of
from projector.consumed import ConsumedRecord, DecodedRecord
from projector.migrations import bundled, migrate
from projector.prediction import AccountView, apply_predicted

TOPIC = "events"
ACCOUNTS = 10_000
PARTITIONS = 6


class Log:
    """The topic's records as the command server would have written them: per partition, in
    offset order; every account's balance and version as its last event left them."""

    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)
        self._ids = [f"acct-{i:05d}" for i in range(ACCOUNTS)]
        self._partition = {a: partition_of(a, PARTITIONS) for a in self._ids}
        self._next_offset = [0] * PARTITIONS
        self._versions = dict.fromkeys(self._ids, 0)
        self._balances = dict.fromkeys(self._ids, 0)
        self._clock = datetime(2026, 12, 7, 12, tzinfo=UTC)

    def _record(self, account_id: str, event: Any) -> ConsumedRecord:
        partition = self._partition[account_id]
        offset = self._next_offset[partition]
        self._next_offset[partition] += 1
        return DecodedRecord(partition, offset, event)

    def _envelope(self, account_id: str) -> dict[str, Any]:
        version = self._versions[account_id] + 1
        self._versions[account_id] = version
        # 10,000 events a second, as in the sustained scenario.
        self._clock += timedelta(microseconds=100)
        at = self._clock.replace(microsecond=self._clock.microsecond // 1000 * 1000)
        return {
            "event_id": event_id_for(account_id, version),
            "account_id": account_id,
            "version": version,
            "command_id": str(uuid.uuid4()),
            "command_fingerprint": "f" * 16,
            "occurred_at": at,
        }

    def openings(self) -> list[ConsumedRecord]:
        return [
            self._record(
                a,
                AccountOpened(**self._envelope(a), balance_after=0, currency="USD", owner=""),
            )
            for a in self._ids
        ]

    def deposits(self, count: int) -> list[ConsumedRecord]:
        records = []
        for _ in range(count):
            account_id = self._random.choice(self._ids)
            amount = self._random.randint(1, 10_000)
            self._balances[account_id] += amount
            event = MoneyDeposited(
                **self._envelope(account_id),
                balance_after=self._balances[account_id],
                amount=amount,
            )
            records.append(self._record(account_id, event))
        return records


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process `pid` so far (/proc/<pid>/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Cost:
    predict_s: float
    apply_s: float
    apply_cpu_s: float
    """This process's CPU while the transaction ran: building the rows, asyncpg encoding them."""
    backend_cpu_s: float
    """The PostgreSQL backend's CPU for the transaction (clock ticks: 10 ms resolution)."""


async def _apply_live(
    connection: Any, view: AccountView, records: list[ConsumedRecord], backend: int
) -> tuple[Cost, bool]:
    """What one batch cost, and whether its prediction held."""
    started = time.perf_counter()
    prediction = view.predict(TOPIC, records)
    predicted = time.perf_counter()
    view.sent(prediction)
    cpu, backend_cpu = time.process_time(), _cpu_s(backend)
    result = await apply_predicted(connection, TOPIC, records, None, prediction)
    applied = time.perf_counter()
    cost = Cost(
        predicted - started,
        applied - predicted,
        time.process_time() - cpu,
        _cpu_s(backend) - backend_cpu,
    )
    return cost, view.settle(result)


async def measure(url: str, sizes: list[int], rounds: int, warmup: int, seed: int) -> None:
    admin = await asyncpg.connect(url)
    name = f"live_apply_{uuid.uuid4().hex[:8]}"
    await admin.execute(f'CREATE DATABASE "{name}"')
    try:
        database = url.rsplit("/", 1)[0] + f"/{name}"
        connection = await asyncpg.connect(database, server_settings={"search_path": "ledger"})
        try:
            await migrate(connection, "ledger", bundled())
            log = Log(seed)
            backend = await connection.fetchval("SELECT pg_backend_pid()")
            view = AccountView()
            openings = log.openings()
            for start in range(0, len(openings), 5000):
                await _apply_live(connection, view, openings[start : start + 5000], backend)
            for start in range(0, warmup, 5000):
                await _apply_live(
                    connection, view, log.deposits(min(5000, warmup - start)), backend
                )
            await connection.execute("CHECKPOINT")
            costs: dict[int, list[Cost]] = {size: [] for size in sizes}
            held = 0
            total = 0
            for _ in range(rounds):
                for size in sizes:
                    cost, hold = await _apply_live(connection, view, log.deposits(size), backend)
                    costs[size].append(cost)
                    held += hold
                    total += 1
            print(f"predictions held: {held} of {total}")
            print(
                "medians; us/event of: apply (elapsed), its client CPU, the backend's CPU (summed"
            )
            print("over the rounds), predict")
            print("size  apply ms  apply  client  backend  predict")
            for size in sizes:
                runs = costs[size]
                apply_ms = statistics.median(c.apply_s for c in runs) * 1000
                client = statistics.median(c.apply_cpu_s for c in runs) * 1e6 / size
                backend_us = sum(c.backend_cpu_s for c in runs) * 1e6 / size / len(runs)
                predict = statistics.median(c.predict_s for c in runs) * 1e6 / size
                print(
                    f"{size:>5} {apply_ms:>9.1f} {apply_ms * 1000 / size:>6.1f}"
                    f" {client:>7.1f} {backend_us:>8.1f} {predict:>8.1f}"
                )
            await _print_tables(connection)
        finally:
            await connection.close()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


async def _print_tables(connection: Any) -> None:
    """Each table's updates (how many HOT: in place, without new index entries) and the size
    of it and its indexes: what the batches left behind."""
    await connection.execute("SELECT pg_stat_force_next_flush()")
    rows = await connection.fetch(
        """SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd,
                  pg_relation_size(relid) AS heap, pg_indexes_size(relid) AS indexes
           FROM pg_stat_user_tables WHERE schemaname = 'ledger' ORDER BY relname"""
    )
    print("table              inserts   updates       HOT  heap MB  indexes MB")
    for row in rows:
        print(
            f"{row['relname']:<16} {row['n_tup_ins']:>9} {row['n_tup_upd']:>9}"
            f" {row['n_tup_hot_upd']:>9} {row['heap'] / 2**20:>8.1f}"
            f" {row['indexes'] / 2**20:>11.1f}"
        )


async def _configure(url: str, settings: list[str]) -> None:
    connection = await asyncpg.connect(url)
    try:
        for setting in settings:
            name, value = setting.split("=", 1)
            await connection.execute(f"ALTER SYSTEM SET {name} = '{value}'")
    finally:
        await connection.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="100,600,2000,5000")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=22)
    parser.add_argument("--url", help="an existing PostgreSQL's admin URL (default: start one)")
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a setting for the PostgreSQL it starts (ALTER SYSTEM, then a restart)",
    )
    arguments = parser.parse_args()
    sizes = [int(size) for size in arguments.sizes.split(",")]

    def run(url: str) -> Coroutine[Any, Any, None]:
        return measure(url, sizes, arguments.rounds, arguments.warmup, arguments.seed)

    if arguments.url:
        asyncio.run(run(arguments.url))
        return
    with tempfile.TemporaryDirectory(prefix="live-apply-") as directory:
        server = Postgres(Path(directory), free_port(), databases=())
        server.start()
        try:
            if arguments.set:
                asyncio.run(_configure(server.url("postgres"), arguments.set))
                server.stop()
                server.start()
            asyncio.run(run(server.url("postgres")))
        finally:
            server.stop()


if __name__ == "__main__":
    main()
