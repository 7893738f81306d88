"""Scenario: batched Deposits through ExecuteBatch, beside the peer and the raw produce (issue 22).

10,000 accounts are opened by producing their AccountOpened events into a fresh topic
(bench.loader), then:

- the peer (bench/peer.py, the `eventsourcing` library on the bench's PostgreSQL) deposits into
  10,000 aggregates of its own, sequentially and with 16 threads;
- the command server takes batches of 100 and of 1,000 Deposits from 1, 4 and 16 clients
  (bench/batch_client.py, closed loop), each run followed by a run of the physical baseline
  (bench/raw_produce.py: the same Avro events from one transactional producer, transactions of
  the batch's size), so that both meet the same minute of this shared machine. `vs raw` is the
  median over those adjacent pairs of the ledger's commands/s over the raw produce's events/s.

Every commands/s figure is also shown over the peer's best (`vs peer`). Goals: at least 25,000
commands/s, 50x the peer and 0.5x the raw produce, at the best configuration.
"""

from __future__ import annotations

import asyncio
from dataclasses import asdict, dataclass

from bench.batch_client import Accounts, LoadRun, closed_loop
from bench.harness import Bench, CpuMeter, running
from bench.peer import PeerBank, deposit_for, peer_environment
from bench.raw_produce import Produced, RawProducer, deposit_events
from bench.read_model_database import fresh_database
from bench.report import Goal, Report, Row, median_of

ACCOUNTS = 10_000
ACCOUNT_PREFIX = "batch-"
GOAL_COMMANDS_PER_S = 25_000
GOAL_VS_PEER = 50.0
GOAL_VS_RAW = 0.5


@dataclass(frozen=True)
class Plan:
    sizes: tuple[int, ...]
    clients: tuple[int, ...]
    peer_threads: tuple[int, ...]
    runs: int
    seconds: float
    warmup_s: float


FULL = Plan(
    sizes=(100, 1_000), clients=(1, 4, 16), peer_threads=(1, 16), runs=3, seconds=5, warmup_s=30
)
QUICK = Plan(
    sizes=(100, 1_000), clients=(1, 16), peer_threads=(1, 16), runs=1, seconds=3, warmup_s=5
)


def _per_command_us(cpu_s: float, commands: int) -> float:
    return cpu_s * 1e6 / commands if commands else float("nan")


def _ledger_figures(run: LoadRun, server: CpuMeter, kafka: CpuMeter) -> dict[str, float]:
    return {
        "commands_per_s": run.per_s,
        **run.call_figures(),
        "server_cores": server.cores,
        "server_cpu_us": _per_command_us(server.cpu_s, run.ok),
        "kafka_cpu_us": _per_command_us(kafka.cpu_s, run.ok),
        "client_cpu_us": _per_command_us(run.cpu_s, run.ok),
    }


def _raw_figures(produced: Produced, kafka: CpuMeter) -> dict[str, float]:
    return {
        "commands_per_s": produced.events_per_s,
        "client_cores": produced.cpu_s / produced.seconds if produced.seconds else float("nan"),
        "client_cpu_us": _per_command_us(produced.cpu_s, produced.events),
        "kafka_cpu_us": _per_command_us(kafka.cpu_s, produced.events),
    }


async def _peer(bench: Bench, report: Report, plan: Plan) -> None:
    """The peer's rows: deposits/s sequentially and with 16 threads, runs taking turns."""
    async with fresh_database(bench.stack, "peer") as database_url:
        bank = PeerBank(env=peer_environment(database_url))
        try:
            accounts = await asyncio.to_thread(bank.open_accounts, ACCOUNTS, ACCOUNT_PREFIX)
            await asyncio.to_thread(deposit_for, bank, accounts, 16, plan.warmup_s / 3)
            runs: dict[int, list[dict[str, float]]] = {t: [] for t in plan.peer_threads}
            postgres = CpuMeter(bench.postgres_pid())
            for _ in range(plan.runs):
                for threads in plan.peer_threads:
                    postgres.start()
                    done = await asyncio.to_thread(
                        deposit_for, bank, accounts, threads, plan.seconds
                    )
                    postgres.stop()
                    runs[threads].append(
                        {
                            "commands_per_s": done.commands_per_s,
                            "client_cores": done.cpu_s / done.seconds,
                            "client_cpu_us": _per_command_us(done.cpu_s, done.deposits),
                            "postgres_cpu_us": _per_command_us(postgres.cpu_s, done.deposits),
                        }
                    )
        finally:
            bank.close()
    for threads, figures in runs.items():
        load = "sequential" if threads == 1 else f"{threads} threads"
        report.rows.append(
            Row("batches", "peer (eventsourcing)", load, median_of(figures), figures)
        )
        print(f"  peer, {load}: {report.rows[-1].metrics['commands_per_s']:,.0f} deposits/s")


def _batches(bench: Bench, report: Report, plan: Plan, topic: str) -> None:
    """The ledger's rows and the raw produce's, each ledger run followed by a raw one."""
    accounts = Accounts(ACCOUNT_PREFIX, ACCOUNTS)
    raw = RawProducer(
        bench.stack.kafka_bootstrap, bench.stack.registry_url, bench.new_topic("raw_produce")
    )
    events = deposit_events(ACCOUNTS, ACCOUNT_PREFIX)
    # Room in the queue for every client's batch at once: with the default (4,000 commands)
    # 16 batches of 1,000 would be refused in turn (RESOURCE_EXHAUSTED) rather than measured.
    room = max(plan.clients) * max(plan.sizes)
    ledger = bench.command_server(topic, {"LEDGER_COMMAND_QUEUE_MAX": str(room)})
    try:
        with running(ledger) as ledger_pid:
            kafka_pid = bench.kafka_pid()
            # A fresh Kafka JVM spends its first minute compiling: load it before measuring.
            asyncio.run(closed_loop(ledger.address, accounts, 1_000, 4, plan.warmup_s))
            raw.produce(events, 1_000, plan.warmup_s / 3)
            for size in plan.sizes:
                raw_runs: list[dict[str, float]] = []
                for clients in plan.clients:
                    runs: list[dict[str, float]] = []
                    for _ in range(plan.runs):
                        server, kafka = CpuMeter(ledger_pid), CpuMeter(kafka_pid)
                        server.start()
                        kafka.start()
                        load = closed_loop(ledger.address, accounts, size, clients, plan.seconds)
                        done = asyncio.run(load)
                        server.stop()
                        kafka.stop()
                        figures = _ledger_figures(done, server, kafka)
                        kafka = CpuMeter(kafka_pid)
                        kafka.start()
                        produced = raw.produce(events, size, plan.seconds)
                        kafka.stop()
                        raw_figures = _raw_figures(produced, kafka)
                        figures["vs_raw"] = (
                            figures["commands_per_s"] / raw_figures["commands_per_s"]
                        )
                        runs.append(figures)
                        raw_runs.append(raw_figures)
                    row = Row("batches", "ledger", f"{size:,} x {clients}", median_of(runs), runs)
                    report.rows.append(row)
                    print(
                        f"  batches of {size:,}, {clients:>2} clients: "
                        f"{row.metrics['commands_per_s']:,.0f} commands/s, "
                        f"p99 {row.metrics['p99_ms']:.0f} ms, {row.metrics['vs_raw']:.2f}x raw",
                        flush=True,
                    )
                row = Row(
                    "batches", "raw produce", f"{size:,} per txn", median_of(raw_runs), raw_runs
                )
                report.rows.append(row)
                rate = row.metrics["commands_per_s"]
                print(f"  raw produce, {size:,} per transaction: {rate:,.0f}/s", flush=True)
    finally:
        raw.close()


def peer_best(report: Report) -> float | None:
    """The peer's best deposits/s in this run, if the peer ran."""
    peers = [r.metrics["commands_per_s"] for r in report.rows if r.target.startswith("peer")]
    return max(peers) if peers else None


def add_vs_peer(report: Report) -> None:
    """`vs_peer` on every row with a commands/s figure."""
    best = peer_best(report)
    if not best:
        return
    for row in report.rows:
        if "commands_per_s" in row.metrics:
            row.metrics["vs_peer"] = row.metrics["commands_per_s"] / best


def run(bench: Bench, report: Report) -> None:
    plan = QUICK if bench.quick else FULL
    topic = bench.new_topic("batches")
    opened = bench.open_accounts(topic, ACCOUNTS, ACCOUNT_PREFIX)
    print(f"  opened {ACCOUNTS:,} accounts in {topic} in {opened.seconds:.1f}s", flush=True)
    report.settings["batches"] = {"plan": asdict(plan), "accounts": ACCOUNTS, "topic": topic}
    asyncio.run(_peer(bench, report, plan))
    _batches(bench, report, plan, topic)
    add_vs_peer(report)
    ledger_rows = [r for r in report.rows if r.scenario == "batches" and r.target == "ledger"]
    best = max(ledger_rows, key=lambda r: r.metrics["commands_per_s"])
    report.goals.append(
        Goal(
            f"batched commands/s ({best.load})",
            best.metrics["commands_per_s"],
            GOAL_COMMANDS_PER_S,
            True,
        )
    )
    report.goals.append(
        Goal(
            f"batched vs the peer's best ({best.load})",
            best.metrics["vs_peer"],
            GOAL_VS_PEER,
            True,
            "x",
        )
    )
    report.goals.append(
        Goal(
            f"batched vs raw produce ({best.load})", best.metrics["vs_raw"], GOAL_VS_RAW, True, "x"
        )
    )
