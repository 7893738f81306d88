"""Scenario: 10,000 commands/s in batches, held; then GetAccounts with 1,000 ids (issue 22).

10,000 accounts are opened in a fresh topic (bench.loader); the command server, the projector
(fresh database) and the query server run on it. A client (bench/batch_client.py, open loop)
sends batches of 100 Deposits on a fixed schedule at 10,000 commands/s; every tenth
acknowledged batch is read back at once with GetAccounts and the batch's consistency token
(the query server answers once the read model includes the batch: ack to readable). Every
second the projector's lag is sampled: each partition's end in Kafka against the projector's
checkpoint in its database; its slope (least squares, events/s) says whether it grows. The run
lasts 60 s (`make bench`), 10 s with `--quick`.

Then, on the same read model (the projector idle), GetAccounts with 1,000 random ids per call
from 1 and 4 clients: accounts/s (goal at least 50,000).
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import time
from dataclasses import asdict, dataclass

import asyncpg  # type: ignore[import-untyped, unused-ignore]
from confluent_kafka import Consumer

from bench.batch_client import Accounts, open_loop, read_accounts
from bench.harness import Bench, CpuMeter, running_all
from bench.log_scan import scan
from bench.read_model_database import checkpoints, fresh_database, wait_covered
from bench.report import Goal, Report, Row, median_of
from bench.scenarios.batches import add_vs_peer
from bench.scenarios.visibility import percentile
from ledger.events.consuming import high_watermarks

ACCOUNTS = 10_000
ACCOUNT_PREFIX = "sustained-"
RATE = 10_000
BATCH = 100
READ_EVERY = 10
GET_ACCOUNTS_IDS = 1_000
GOAL_ACK_P99_MS = 100.0
GOAL_VISIBLE_P99_MS = 500.0
GOAL_ACCOUNTS_PER_S = 50_000
LAG_SLOPE_TOLERANCE = 0.01
"""A lag slope under this share of the rate (events/s) counts as not growing: sampling noise."""


@dataclass(frozen=True)
class Plan:
    seconds: float
    warmup_s: float
    read_clients: tuple[int, ...]
    read_runs: int
    read_seconds: float


FULL = Plan(seconds=60, warmup_s=20, read_clients=(1, 4), read_runs=3, read_seconds=5)
QUICK = Plan(seconds=10, warmup_s=5, read_clients=(1, 4), read_runs=1, read_seconds=3)


async def _sample_lag(
    bootstrap: str,
    database_url: str,
    topic: str,
    stop: asyncio.Event,
    samples: list[tuple[float, float]],
) -> None:
    """Every second until `stop`: (seconds since start, events the projector is behind)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "bench-lag"})
    connection = await asyncpg.connect(database_url)
    started = time.monotonic()
    try:
        while not stop.is_set():
            ends = await asyncio.to_thread(high_watermarks, consumer, topic, None, 10)
            seen = await checkpoints(connection, topic)
            # The end is one past the last transaction marker: one behind while idle.
            lag = sum(max(0, end - 1 - seen.get(partition, -1)) for partition, end in ends.items())
            samples.append((time.monotonic() - started, float(lag)))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), 1.0)
    finally:
        await connection.close()
        consumer.close()


def lag_slope(samples: list[tuple[float, float]]) -> float:
    """Events/s by which the lag grew over (seconds, lag) samples: least squares; NaN if fewer
    than three."""
    if len(samples) < 3:
        return float("nan")
    times, lags = zip(*samples, strict=True)
    return statistics.linear_regression(times, lags).slope


async def _measure(bench: Bench, report: Report, plan: Plan, topic: str) -> None:
    last_offsets = scan(bench.stack.kafka_bootstrap, topic, keep_values=False).last_offsets
    accounts = Accounts(ACCOUNT_PREFIX, ACCOUNTS)
    async with fresh_database(bench.stack, "sustained") as database_url:
        command_server = bench.command_server(topic)
        query_server = bench.query_server(topic, database_url)
        services = [command_server, bench.projector(topic, database_url), query_server]
        with running_all(services) as pids:
            await wait_covered(database_url, topic, last_offsets, timeout_s=120)
            cs, qs = command_server.address, query_server.address
            await open_loop(cs, qs, accounts, BATCH, RATE, plan.warmup_s, READ_EVERY)
            meters = [CpuMeter(pid) for pid in [*pids, bench.kafka_pid(), bench.postgres_pid()]]
            for meter in meters:
                meter.start()
            stop = asyncio.Event()
            samples: list[tuple[float, float]] = []
            sampler = asyncio.create_task(
                _sample_lag(bench.stack.kafka_bootstrap, database_url, topic, stop, samples)
            )
            done = await open_loop(cs, qs, accounts, BATCH, RATE, plan.seconds, READ_EVERY)
            stop.set()
            await sampler
            for meter in meters:
                meter.stop()
            lags = [lag for _, lag in samples]
            figures = {
                "commands_per_s": done.ok / plan.seconds,
                "p50_ms": percentile(done.call_ms, 0.5),
                "p99_ms": percentile(done.call_ms, 0.99),
                "visible_p50_ms": percentile(done.visible_ms, 0.5),
                "visible_p99_ms": percentile(done.visible_ms, 0.99),
                "send_late_p99_ms": percentile(done.late_ms, 0.99),
                "lag_slope": lag_slope(samples),
                "lag_max": max(lags, default=float("nan")),
                "lag_last": lags[-1] if lags else float("nan"),
                "errors": float(done.failed + sum(done.errors.values())),
                "server_cores": sum(m.cores for m in meters[:3]),
                "kafka_cores": meters[3].cores,
                "postgres_cores": meters[4].cores,
                "client_cores": done.cpu_s / plan.seconds,
            }
            report.rows.append(
                Row("sustained", "ledger", f"{RATE:,}/s in batches of {BATCH}", figures, [figures])
            )
            report.settings["sustained_errors"] = dict(done.errors)
            report.settings["sustained_lag_samples"] = samples
            print(
                f"  {RATE:,}/s offered: {figures['commands_per_s']:,.0f}/s acknowledged, ack p99 "
                f"{figures['p99_ms']:.0f} ms, visible p99 {figures['visible_p99_ms']:.0f} ms, lag "
                f"slope {figures['lag_slope']:.1f} events/s (max {figures['lag_max']:.0f})",
                flush=True,
            )
            await _get_accounts(report, plan, qs, accounts, pids[2])


async def _get_accounts(
    report: Report, plan: Plan, address: str, accounts: Accounts, server_pid: int
) -> None:
    for clients in plan.read_clients:
        runs = []
        for _ in range(plan.read_runs):
            server = CpuMeter(server_pid)
            server.start()
            done = await read_accounts(
                address, accounts, GET_ACCOUNTS_IDS, clients, plan.read_seconds
            )
            server.stop()
            runs.append(
                {"accounts_per_s": done.per_s, **done.call_figures(), "server_cores": server.cores}
            )
        row = Row(
            "get_accounts",
            "query server",
            f"{GET_ACCOUNTS_IDS:,} ids x {clients}",
            median_of(runs),
            runs,
        )
        report.rows.append(row)
        print(f"  GetAccounts, {clients} clients: {row.metrics['accounts_per_s']:,.0f} accounts/s")


def run(bench: Bench, report: Report) -> None:
    plan = QUICK if bench.quick else FULL
    topic = bench.new_topic("sustained")
    bench.open_accounts(topic, ACCOUNTS, ACCOUNT_PREFIX)
    report.settings["sustained"] = {
        "plan": asdict(plan),
        "rate": RATE,
        "batch": BATCH,
        "read_every": READ_EVERY,
        "topic": topic,
    }
    asyncio.run(_measure(bench, report, plan, topic))
    add_vs_peer(report)
    figures = next(r.metrics for r in report.rows if r.scenario == "sustained")
    report.goals += [
        Goal(f"sustained {RATE:,}/s: ack p99", figures["p99_ms"], GOAL_ACK_P99_MS, False, " ms"),
        Goal(
            f"sustained {RATE:,}/s: ack to readable p99",
            figures["visible_p99_ms"],
            GOAL_VISIBLE_P99_MS,
            False,
            " ms",
        ),
        Goal(
            f"sustained {RATE:,}/s: projector lag slope",
            figures["lag_slope"],
            RATE * LAG_SLOPE_TOLERANCE,
            False,
            " events/s",
        ),
    ]
    best = max(
        (r for r in report.rows if r.scenario == "get_accounts"),
        key=lambda r: r.metrics["accounts_per_s"],
    )
    report.goals.append(
        Goal(
            f"GetAccounts ({best.load})", best.metrics["accounts_per_s"], GOAL_ACCOUNTS_PER_S, True
        )
    )
