"""Scenario 3: how soon a command's effect can be read back, at a steady 1,000 commands/s.

1,000 accounts are opened by producing their AccountOpened events into a fresh topic
(bench.loader); then the command server, the projector (fresh database) and the query server run
on it. Client processes (bench/visibility_client.py, asyncio, open loop) send Deposits at a
fixed rate, split between them, and for every n-th acknowledged Deposit (about READS_PER_S
reads a second, whatever the rate) at once ask GetAccount with the acknowledgement's consistency
token: the query server holds the answer until the read model includes the deposit. The figure
is the time from the acknowledgement until that answer. Reading back every command would double
the calls the machine serves and measure the queue of reads rather than the lag of the model.
A warm-up at the same rate comes first (a fresh Kafka JVM is slow for its first minute).
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from multiprocessing.pool import Pool

from bench.harness import Bench, CpuMeter, running_all
from bench.log_scan import scan
from bench.read_model_database import fresh_database, wait_covered
from bench.report import Goal, Report, Row, median_of
from bench.visibility_client import ClientPlan, ClientRun, drive
from devstack.ports import LOOPBACK, free_port

ACCOUNTS = 1_000
ACCOUNT_PREFIX = "visible-"
RATE = 1_000
READS_PER_S = 100
GOAL_P50_MS = 15.0
GOAL_P99_MS = 100.0


@dataclass(frozen=True)
class Plan:
    rates: tuple[int, ...]
    """Offered commands/s; the first is the goal's (RATE), a lower one shows the lag when the
    machine is not saturated."""
    seconds: float
    runs: int
    warmup_s: float
    processes: int


# Two client processes: one Python process costs about as much CPU per call as the servers.
FULL = Plan(rates=(RATE, 300, 100), seconds=20, runs=3, warmup_s=20, processes=2)
QUICK = Plan(rates=(RATE,), seconds=4, runs=1, warmup_s=2, processes=2)


@dataclass(frozen=True)
class Target:
    """The running services the clients talk to, and the processes whose CPU is measured."""

    command_address: str
    query_address: str
    server_pids: list[int]
    kafka_pid: int
    postgres_pid: int


def percentile(values: Sequence[float], share: float) -> float:
    """The value below which `share` of `values` fall (nearest rank); NaN if there are none."""
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(share * len(ordered)) - 1))]


def _offer(pool: Pool, plan: Plan, target: Target, rate: int, seconds: float) -> list[ClientRun]:
    client = ClientPlan(
        command_address=target.command_address,
        query_address=target.query_address,
        rate=rate / plan.processes,
        seconds=seconds,
        accounts=ACCOUNTS,
        account_prefix=ACCOUNT_PREFIX,
        read_every=max(1, round(rate / READS_PER_S)),
    )
    return pool.map(drive, [client] * plan.processes)


def _figures(
    clients: list[ClientRun], seconds: float, cores: dict[str, float]
) -> tuple[dict[str, float], dict[str, float]]:
    """(read-your-writes figures, acknowledgement figures) of one run."""
    visible = [ms for client in clients for ms in client.visible_ms]
    acks = [ms for client in clients for ms in client.ack_ms]
    late = [ms for client in clients for ms in client.late_ms]
    achieved = sum(client.acked_in_window for client in clients) / seconds
    client_cpu = sum(client.cpu_s for client in clients)
    wall = max(client.wall_s for client in clients)
    common = {
        "commands_per_s": achieved,
        "offered_per_s": sum(client.sent for client in clients) / seconds,
        "reads_per_s": len(visible) / seconds,
        "client_cores": client_cpu / wall if wall > 0 else math.nan,
        **cores,
        "errors": float(sum(sum(client.errors.values()) for client in clients)),
        "stale": float(sum(client.stale for client in clients)),
        "skipped": float(sum(client.skipped for client in clients)),
        "send_late_p99_ms": percentile(late, 0.99),
    }
    return (
        {**common, "p50_ms": percentile(visible, 0.5), "p99_ms": percentile(visible, 0.99)},
        {**common, "p50_ms": percentile(acks, 0.5), "p99_ms": percentile(acks, 0.99)},
    )


def _one_run(
    pool: Pool, plan: Plan, target: Target, rate: int, errors: dict[str, str]
) -> tuple[dict[str, float], dict[str, float]]:
    servers = _TreeMeter(target.server_pids)
    kafka, postgres = CpuMeter(target.kafka_pid), CpuMeter(target.postgres_pid)
    for meter in (servers, kafka, postgres):
        meter.start()
    clients = _offer(pool, plan, target, rate, plan.seconds)
    for meter in (servers, kafka, postgres):
        meter.stop()
    for client in clients:
        for kind, details in client.error_samples.items():
            errors.setdefault(kind, details)
    cores = {
        "server_cores": servers.cores,
        "kafka_cores": kafka.cores,
        "postgres_cores": postgres.cores,
    }
    return _figures(clients, plan.seconds, cores)


def _record(
    report: Report, rate: int, visible: list[dict[str, float]], acks: list[dict[str, float]]
) -> None:
    load_text = f"{rate:,}/s offered"
    report.rows.append(Row("visibility", "ack to visible", load_text, median_of(visible), visible))
    report.rows.append(Row("visibility", "command ack", load_text, median_of(acks), acks))
    figures = report.rows[-2].metrics
    print(
        f"  {rate:,}/s offered: {figures['commands_per_s']:,.0f}/s acknowledged, "
        f"{figures['reads_per_s']:,.0f}/s read back; "
        f"ack to visible p50 {figures['p50_ms']:.1f} ms, p99 {figures['p99_ms']:.1f} ms",
        flush=True,
    )


async def _measure(bench: Bench, report: Report, plan: Plan, topic: str) -> dict[str, str]:
    """Run every rate of `plan`; returns the first error seen of each kind."""
    last_offsets = scan(bench.stack.kafka_bootstrap, topic, keep_values=False).last_offsets
    errors: dict[str, str] = {}
    async with fresh_database(bench.stack, "visibility") as database_url:
        command_server = bench.command_server(
            topic, {"LEDGER_METRICS_ADDR": f"{LOOPBACK}:{free_port()}"}
        )
        query_server = bench.query_server(topic, database_url)
        services = [command_server, bench.projector(topic, database_url), query_server]
        # The client processes and the services run elsewhere: blocking this loop is fine.
        with (
            running_all(services) as pids,
            multiprocessing.get_context("spawn").Pool(plan.processes) as pool,
        ):
            await wait_covered(database_url, topic, last_offsets, timeout_s=120)
            target = Target(
                command_server.address,
                query_server.address,
                pids,
                bench.kafka_pid(),
                bench.postgres_pid(),
            )
            warm = _offer(pool, plan, target, plan.rates[0], plan.warmup_s)
            print(f"  warm-up: {sum(c.acked_in_window for c in warm) / plan.warmup_s:,.0f}/s")
            for rate in plan.rates:
                runs = [_one_run(pool, plan, target, rate, errors) for _ in range(plan.runs)]
                _record(report, rate, [v for v, _ in runs], [a for _, a in runs])
    return errors


class _TreeMeter:
    """CPU of several process trees (the three Ledger services) as one meter."""

    def __init__(self, pids: Sequence[int]) -> None:
        self._meters = [CpuMeter(pid) for pid in pids]

    def start(self) -> None:
        for meter in self._meters:
            meter.start()

    def stop(self) -> None:
        for meter in self._meters:
            meter.stop()

    @property
    def cores(self) -> float:
        return sum(meter.cores for meter in self._meters)


def run(bench: Bench, report: Report) -> None:
    plan = QUICK if bench.quick else FULL
    topic = bench.new_topic("visibility")
    bench.open_accounts(topic, ACCOUNTS, ACCOUNT_PREFIX)
    errors = asyncio.run(_measure(bench, report, plan, topic))
    report.settings["visibility"] = {
        "plan": asdict(plan),
        "accounts": ACCOUNTS,
        "reads_per_s": READS_PER_S,
        "topic": topic,
        "first_errors": errors,
    }
    figures = next(
        row.metrics
        for row in report.rows
        if row.scenario == "visibility"
        and row.target == "ack to visible"
        and row.load.startswith(f"{RATE:,}/s")
    )
    for name, limit, key in (("p50", GOAL_P50_MS, "p50_ms"), ("p99", GOAL_P99_MS, "p99_ms")):
        report.goals.append(
            Goal(
                f"visibility {name} at {RATE:,}/s offered, ack to answer",
                figures[key],
                limit,
                False,
                " ms",
            )
        )
    report.notes.append(
        f"visibility: {figures['commands_per_s']:,.0f} of {RATE:,} commands/s acknowledged within "
        f"the run, {plan.processes} client processes using {figures['client_cores']:.2f} cores, "
        f"the three Ledger processes {figures['server_cores']:.2f}; {figures['stale']:.0f} stale "
        f"answers, {figures['errors']:.0f} errors {errors or ''}"
    )
