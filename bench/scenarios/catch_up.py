"""Scenario 2: the projector catching up on N events already in Kafka, beside a raw COPY.

N valid events (whole account histories: an AccountOpened and 99 deposits each) are produced
into a fresh topic (bench.loader), then a projector is launched on it with a fresh database and
timed from launch until its checkpoints in PostgreSQL cover every partition's last record. That
includes the process's start-up (imports, migrations, joining its consumer group), reported
apart as the time to its first committed batch.

The same catch-up is also timed with two projectors sharing one consumer group (each applies
the partitions it is assigned, into the same database): how the read side scales out, as
`LEDGER_PROJECTOR_WORKERS=2` runs it (one `python -m projector` supervising two workers; their
CPU is that of its process tree). One projector's Python (its consumer thread and event loop
share one interpreter lock) keeps it near one core, whatever else the machine has. Runs of one
and two alternate, so that a noisy minute falls on both.

The baseline is PostgreSQL's own bulk path with none of the projector's work: the same records,
read and decoded beforehand (not timed), as rows shaped like `ledger.movements` (money already
NUMERIC), binary-COPYed with asyncpg's copy_records_to_table in one statement, into a copy of
the table without indexes or constraints and into one with all of them (`LIKE ...
INCLUDING ALL`), in a database of their own migrated as the projector would. Only the COPY is
timed (client-side encoding included); accounts, daily summaries and checkpoints, which the
projector also writes, are not part of it.
"""

from __future__ import annotations

import asyncio
import math
import time
import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from decimal import Decimal
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
from confluent_kafka.schema_registry import SchemaRegistryClient

from bench.harness import Bench
from bench.loader import EVENTS_PER_ACCOUNT, load_in_processes
from bench.log_scan import Scanned, scan
from bench.procstat import tree_cpu_seconds
from bench.read_model_database import SCHEMA, checkpoints, covers, fresh_database
from bench.report import Goal, Report, Row, median_of
from devstack.ports import LOOPBACK, free_ports_in_a_row
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
from projector import projection
from projector.migrations import bundled, migrate

GOAL_EVENTS_PER_S = 50_000
GOAL_VS_COPY = 0.3
GOAL_EVENTS = 1_000_000
BASELINE_SCHEMA = "bench_copy"
# The movements' columns as the raw COPY baseline writes them: the projector's, with the time as
# a timestamptz (not staged microseconds) and the amount already scaled (no exponent).
MOVEMENT_COLUMNS = tuple(
    "occurred_at" if column == "occurred_us" else column
    for column in projection.MOVEMENT_COLUMNS
    if column != "exponent"
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
    """Catch-ups from offset 0 per number of projectors, each into a fresh database: several,
    because single runs on a shared machine vary widely (docs/performance.md, "The read side")."""
    copy_runs: int
    timeout_s: float
    instances: tuple[int, ...] = (1, 2)
    """Projectors sharing the consumer group, per configuration measured."""


FULL = Plan(events=1_000_000, projector_runs=3, copy_runs=2, timeout_s=1800)
QUICK = Plan(events=20_000, projector_runs=1, copy_runs=1, timeout_s=300)


@dataclass(frozen=True)
class CatchUp:
    first_batch_s: float
    elapsed_s: float
    projector_cpu_s: float
    postgres_cpu_s: float


async def _catch_up(
    bench: Bench,
    topic: str,
    database_url: str,
    last_offsets: dict[int, int],
    timeout_s: float,
    instances: int,
) -> CatchUp:
    """Launch a projector with `instances` workers on `topic` and time it until its checkpoints
    cover `last_offsets`."""
    env = {
        # A group of its own: a projector killed after its stop timeout stays a member of its
        # group until its session times out, which would hold up the next run's first batch.
        "LEDGER_PROJECTOR_GROUP": f"bench-{topic}-{uuid.uuid4().hex[:8]}",
        "LEDGER_PROJECTOR_WORKERS": str(instances),
    }
    # Worker i serves its status on the first port + i.
    http = f"{LOOPBACK}:{free_ports_in_a_row(instances)}"
    projector = bench.projector(topic, database_url, env, http=http)
    postgres_pid = bench.postgres_pid()
    watcher = await asyncpg.connect(database_url)
    try:
        postgres_started = tree_cpu_seconds(postgres_pid)
        started = time.monotonic()
        try:
            projector.launch()
            pid = projector.pid
            if pid is None:
                raise RuntimeError(f"the projector exited at once: {projector.log_text()[-2000:]}")
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
            # Read before stopping: the projectors' CPU over exactly the catch-up (a supervisor's
            # tree holds its workers).
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
                event.reference,
                event.memo,
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
    bench: Bench, plan: Plan, topic: str, scanned: Scanned, instances: int
) -> dict[str, float]:
    events = len(scanned.records)
    async with fresh_database(bench.stack, "catchup") as database_url:
        caught = await _catch_up(
            bench, topic, database_url, scanned.last_offsets, plan.timeout_s, instances
        )
    print(
        f"  {_target(instances)} caught up in {caught.elapsed_s:.1f}s "
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


def _target(instances: int) -> str:
    return "projector" if instances == 1 else f"{instances} projectors"


async def _copy_baselines(
    bench: Bench, plan: Plan, topic: str, scanned: Scanned
) -> tuple[dict[str, list[dict[str, float]]], int, float]:
    """The COPY baselines' runs, the number of movement rows, and the seconds decoding took."""
    codec = EventCodec(
        ConfluentSchemaStore(SchemaRegistryClient({"url": bench.stack.registry_url}))
    )
    codec.register(topic)
    decode_started = time.monotonic()
    rows = movement_rows(codec, scanned.records)
    decode_s = time.monotonic() - decode_started
    async with fresh_database(bench.stack, "copy") as database_url:
        connection = await asyncpg.connect(database_url)
        try:
            await migrate(connection, SCHEMA, bundled())
        finally:
            await connection.close()
        copies = await _copy_runs(bench, database_url, rows, plan.copy_runs)
    return copies, len(rows), decode_s


async def _measure(bench: Bench, report: Report, plan: Plan, topic: str, scanned: Scanned) -> None:
    events = len(scanned.records)
    load_text = f"{events:,} events"
    catch_ups: dict[int, list[dict[str, float]]] = {n: [] for n in plan.instances}
    for round_ in range(plan.projector_runs):
        # The first run after loading tends to be the slowest: each configuration goes first
        # in turn.
        order = plan.instances if round_ % 2 == 0 else plan.instances[::-1]
        for instances in order:
            run = await _projector_run(bench, plan, topic, scanned, instances)
            catch_ups[instances].append(run)
    copies, movement_count, decode_s = await _copy_baselines(bench, plan, topic, scanned)
    report.settings["catch_up"] = {
        "plan": asdict(plan),
        "topic": topic,
        "events": events,
        "movement_rows": movement_count,
        "baseline_decode_s": decode_s,
    }
    medians = {n: median_of(runs) for n, runs in catch_ups.items()}
    for instances, runs in catch_ups.items():
        report.rows.append(Row("catch_up", _target(instances), load_text, medians[instances], runs))
    for target, runs in copies.items():
        figures = median_of(runs)
        report.rows.append(Row("catch_up", target, load_text, figures, runs))
        for projector in medians.values():
            projector[f"vs_{target.split()[-1]}"] = (
                projector["events_per_s"] / figures["events_per_s"]
            )
        print(f"  {target}: {figures['events_per_s']:,.0f} rows/s", flush=True)
    suffix = (
        "" if events >= GOAL_EVENTS else f" (the goal is for {GOAL_EVENTS:,}; full measures it)"
    )
    for instances, projector in medians.items():
        projector["vs_copy"] = projector["vs_unindexed"]
        who = "" if instances == 1 else f", {instances} projectors in one group"
        report.goals.append(
            Goal(
                f"projector catch-up events/s ({load_text}{who}){suffix}",
                projector["events_per_s"],
                GOAL_EVENTS_PER_S,
                True,
            )
        )
        for table in ("unindexed", "indexed"):
            report.goals.append(
                Goal(
                    f"catch-up vs raw COPY ({table}{who})",
                    projector[f"vs_{table}"],
                    GOAL_VS_COPY,
                    True,
                    "x",
                )
            )
        rates = ", ".join(f"{run['events_per_s']:,.0f}" for run in catch_ups[instances])
        report.notes.append(
            f"catch-up, {_target(instances)}: medians of {len(catch_ups[instances])} run(s) from "
            f"offset 0 ({rates} events/s); applied at "
            f"{projector['applying_events_per_s']:,.0f} events/s after the first batch "
            f"({projector['first_batch_s']:.1f}s of start-up)"
        )
    report.notes.append(
        f"catch-up: the COPY baseline is movement rows only, decoded beforehand in "
        f"{decode_s:.1f}s (not timed)"
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
