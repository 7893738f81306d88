"""Scenario 2: the projector catching up on N events already in Kafka, beside a raw COPY.

N valid events (whole account histories: an AccountOpened and 99 deposits each) are produced
into a fresh topic (bench.loader), then a projector is launched on it with a fresh database and
timed from launch until its checkpoints in PostgreSQL cover every partition's last record. That
includes the process's start-up (imports, migrations, joining its consumer group), reported
apart as the time to its first committed batch.

The baseline is PostgreSQL's own bulk path with none of the projector's work: the same records,
read and decoded beforehand (not timed), as rows shaped like `ledger.movements` (money already
NUMERIC), binary-COPYed with asyncpg's copy_records_to_table in one statement, into a copy of
the table without indexes or constraints and into one with all of them (`LIKE ...
INCLUDING ALL`). Only the COPY is timed (client-side encoding included); accounts, daily
summaries and checkpoints, which the projector also writes, are not part of it.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
from confluent_kafka.schema_registry import SchemaRegistryClient

from bench.harness import Bench
from bench.loader import EVENTS_PER_ACCOUNT, load_in_processes
from bench.log_scan import Scanned, scan
from bench.procstat import child_pid, tree_cpu_seconds
from bench.read_model import SCHEMA, checkpoints, covers, fresh_database
from bench.report import Goal, Report, Row, median_of
from ledger.domain.money import currency_exponent
from ledger.events.codec import EventCodec
from ledger.events.records import (
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCredited,
    TransferDebited,
)
from ledger.events.schema_store import ConfluentSchemaStore

GOAL_EVENTS_PER_S = 50_000
GOAL_VS_COPY = 0.3
GOAL_EVENTS = 1_000_000
BASELINE_SCHEMA = "bench_copy"
MOVEMENT_COLUMNS = (
    "event_id",
    "account_id",
    "version",
    "kind",
    "amount",
    "balance_after",
    "occurred_at",
    "counterparty_id",
    "transfer_id",
    "command_id",
    "partition",
    "offset",
)
_KINDS: dict[type, str] = {
    MoneyDeposited: "DEPOSIT",
    MoneyWithdrawn: "WITHDRAWAL",
    TransferDebited: "TRANSFER_OUT",
    TransferCredited: "TRANSFER_IN",
}
_POLL_S = 0.05


@dataclass(frozen=True)
class Plan:
    events: int
    projector_runs: int
    """Catch-ups from offset 0, each into a fresh database: one run here can be 10 % off the
    next."""
    copy_runs: int
    timeout_s: float


FULL = Plan(events=1_000_000, projector_runs=3, copy_runs=2, timeout_s=1800)
QUICK = Plan(events=20_000, projector_runs=1, copy_runs=1, timeout_s=300)


@dataclass(frozen=True)
class CatchUp:
    first_batch_s: float
    elapsed_s: float
    projector_cpu_s: float
    postgres_cpu_s: float


async def _catch_up(
    bench: Bench, topic: str, database_url: str, last_offsets: dict[int, int], timeout_s: float
) -> CatchUp:
    """Launch a projector on `topic` and time it until its checkpoints cover `last_offsets`."""
    projector = bench.projector(topic, database_url)
    postgres_pid = bench.postgres_pid()
    watcher = await asyncpg.connect(database_url)
    try:
        postgres_started = tree_cpu_seconds(postgres_pid)
        started = time.monotonic()
        projector.launch()
        try:
            pid = child_pid("projector")
            first_batch = float("nan")
            while True:
                seen = await checkpoints(watcher, topic)
                now = time.monotonic()
                if math.isnan(first_batch) and any(o >= 0 for o in seen.values()):
                    first_batch = now - started
                if covers(seen, last_offsets):
                    break
                if not projector.is_running():
                    raise RuntimeError(f"the projector exited: {projector.log_text()[-2000:]}")
                if now - started > timeout_s:
                    raise TimeoutError(f"projector not caught up after {timeout_s:.0f}s: {seen}")
                await asyncio.sleep(_POLL_S)
            elapsed = now - started
            # Read before stopping: the projector's CPU over exactly the catch-up.
            projector_cpu = tree_cpu_seconds(pid)
            postgres_cpu = tree_cpu_seconds(postgres_pid) - postgres_started
        finally:
            await asyncio.to_thread(projector.stop)
    finally:
        await watcher.close()
    return CatchUp(first_batch, elapsed, projector_cpu, postgres_cpu)


def movement_rows(
    codec: EventCodec, records: Sequence[tuple[int, int, bytes]]
) -> list[tuple[Any, ...]]:
    """`ledger.movements` rows of the records (AccountOpened events make none)."""
    exponents: dict[str, int] = {}
    rows: list[tuple[Any, ...]] = []
    for partition, offset, value in records:
        event = codec.decode(value)
        if isinstance(event, AccountOpened):
            exponents[event.account_id] = currency_exponent(event.currency)
            continue
        kind = _KINDS.get(type(event))
        if kind is None:
            continue
        assert isinstance(
            event, MoneyDeposited | MoneyWithdrawn | TransferDebited | TransferCredited
        )
        exponent = exponents[event.account_id]
        transfer = event if isinstance(event, TransferDebited | TransferCredited) else None
        rows.append(
            (
                event.event_id,
                event.account_id,
                event.version,
                kind,
                Decimal(event.amount).scaleb(-exponent),
                Decimal(event.balance_after or 0).scaleb(-exponent),
                event.occurred_at,
                None if transfer is None else transfer.counterparty_id,
                None if transfer is None else transfer.transfer_id,
                event.command_id,
                partition,
                offset,
            )
        )
    return rows


async def _copy_runs(
    bench: Bench, database_url: str, rows: list[tuple[Any, ...]], runs: int
) -> dict[str, list[dict[str, float]]]:
    """Time a binary COPY of `rows` into each baseline table, `runs` times (emptied before)."""
    tables = {
        "COPY unindexed": f"CREATE TABLE {BASELINE_SCHEMA}.unindexed (LIKE {SCHEMA}.movements)",
        "COPY indexed": (
            f"CREATE TABLE {BASELINE_SCHEMA}.indexed (LIKE {SCHEMA}.movements INCLUDING ALL)"
        ),
    }
    postgres_pid = bench.postgres_pid()
    results: dict[str, list[dict[str, float]]] = {target: [] for target in tables}
    connection = await asyncpg.connect(database_url)
    try:
        await connection.execute(f"CREATE SCHEMA {BASELINE_SCHEMA}")
        for ddl in tables.values():
            await connection.execute(ddl)
        for _ in range(runs):
            for target in tables:
                table = target.split()[-1]
                await connection.execute(f"TRUNCATE {BASELINE_SCHEMA}.{table}")
                await connection.execute("CHECKPOINT")
                postgres_started = tree_cpu_seconds(postgres_pid)
                client_started = time.process_time()
                started = time.monotonic()
                await connection.copy_records_to_table(
                    table, records=rows, columns=MOVEMENT_COLUMNS, schema_name=BASELINE_SCHEMA
                )
                seconds = time.monotonic() - started
                client_cpu = time.process_time() - client_started
                postgres_cpu = tree_cpu_seconds(postgres_pid) - postgres_started
                results[target].append(
                    {
                        "elapsed_s": seconds,
                        "events_per_s": len(rows) / seconds,
                        "process_cpu_s": client_cpu,
                        "postgres_cpu_s": postgres_cpu,
                        "process_cpu_us_per_event": client_cpu * 1e6 / len(rows),
                        "postgres_cpu_us_per_event": postgres_cpu * 1e6 / len(rows),
                    }
                )
    finally:
        await connection.close()
    return results


async def _projector_run(
    bench: Bench, plan: Plan, topic: str, scanned: Scanned, database_url: str
) -> dict[str, float]:
    events = len(scanned.records)
    caught = await _catch_up(bench, topic, database_url, scanned.last_offsets, plan.timeout_s)
    print(
        f"  projector caught up in {caught.elapsed_s:.1f}s "
        f"(first batch at {caught.first_batch_s:.1f}s)",
        flush=True,
    )
    return {
        "first_batch_s": caught.first_batch_s,
        "elapsed_s": caught.elapsed_s,
        "events_per_s": events / caught.elapsed_s,
        "applying_events_per_s": events / (caught.elapsed_s - caught.first_batch_s),
        "process_cpu_s": caught.projector_cpu_s,
        "postgres_cpu_s": caught.postgres_cpu_s,
        "process_cpu_us_per_event": caught.projector_cpu_s * 1e6 / events,
        "postgres_cpu_us_per_event": caught.postgres_cpu_s * 1e6 / events,
    }


async def _measure(bench: Bench, report: Report, plan: Plan, topic: str, scanned: Scanned) -> None:
    events = len(scanned.records)
    load_text = f"{events:,} events"
    catch_ups: list[dict[str, float]] = []
    for _ in range(plan.projector_runs - 1):
        async with fresh_database(bench.stack, "catchup") as database_url:
            catch_ups.append(await _projector_run(bench, plan, topic, scanned, database_url))
    # The last run's database holds the schema whose movements table the baselines copy.
    async with fresh_database(bench.stack, "catchup") as database_url:
        catch_ups.append(await _projector_run(bench, plan, topic, scanned, database_url))
        codec = EventCodec(
            ConfluentSchemaStore(SchemaRegistryClient({"url": bench.stack.registry_url}))
        )
        codec.register(topic)
        decode_started = time.monotonic()
        rows = movement_rows(codec, scanned.records)
        decode_s = time.monotonic() - decode_started
        copies = await _copy_runs(bench, database_url, rows, plan.copy_runs)
    projector = median_of(catch_ups)
    report.settings["catch_up"] = {
        "plan": asdict(plan),
        "topic": topic,
        "events": events,
        "movement_rows": len(rows),
        "baseline_decode_s": decode_s,
    }
    projector_row = Row("catch_up", "projector", load_text, projector, catch_ups)
    report.rows.append(projector_row)
    for target, runs in copies.items():
        figures = median_of(runs)
        report.rows.append(Row("catch_up", target, load_text, figures, runs))
        projector[f"vs_{target.split()[-1]}"] = projector["events_per_s"] / figures["events_per_s"]
        print(f"  {target}: {figures['events_per_s']:,.0f} rows/s", flush=True)
    projector["vs_copy"] = projector["vs_unindexed"]
    suffix = (
        "" if events >= GOAL_EVENTS else f" (the goal is for {GOAL_EVENTS:,}; full measures it)"
    )
    report.goals.append(
        Goal(
            f"projector catch-up events/s ({load_text}){suffix}",
            projector["events_per_s"],
            GOAL_EVENTS_PER_S,
            True,
        )
    )
    for table in ("unindexed", "indexed"):
        report.goals.append(
            Goal(
                f"catch-up vs raw COPY ({table})", projector[f"vs_{table}"], GOAL_VS_COPY, True, "x"
            )
        )
    rates = ", ".join(f"{run['events_per_s']:,.0f}" for run in catch_ups)
    report.notes.append(
        f"catch-up: medians of {len(catch_ups)} run(s) from offset 0 ({rates} events/s); "
        f"the projector applied at {projector['applying_events_per_s']:,.0f} events/s after its "
        f"first batch ({projector['first_batch_s']:.1f}s of start-up); the COPY baseline is "
        f"movement rows only, decoded beforehand in {decode_s:.1f}s (not timed)"
    )


def run(bench: Bench, report: Report) -> None:
    plan = QUICK if bench.quick else FULL
    topic = bench.new_topic("catchup")
    loaded = load_in_processes(
        bench.stack.kafka_bootstrap,
        bench.stack.registry_url,
        topic,
        accounts=plan.events // EVENTS_PER_ACCOUNT,
        prefix="catchup-",
    )
    print(f"loaded {loaded.events:,} events in {loaded.seconds:.1f}s", flush=True)
    scanned = scan(bench.stack.kafka_bootstrap, topic)
    asyncio.run(_measure(bench, report, plan, topic, scanned))
