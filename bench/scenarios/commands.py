"""Scenario 1: durable Deposits across 10,000 accounts, beside a no-op gRPC server.

Both servers get the same ghz load, run by run interleaved so that the noise of a shared machine
falls on both alike. The ratio is the median, over the pairs of adjacent runs, of the command
server's commands/s over the no-op server's at the same client count. A second part holds the
rate at 1,000 commands/s and reports the latency. A third compares, at 64 clients, a command
server serving TLS and verifying tokens with the plaintext one (bench/tls_comparison.py).
"""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.ghz import Load, ensure_ghz
from bench.harness import Bench, metered_ghz, running
from bench.noop_comparison import ComparisonPlan, Target, interleaved, paired_median, warmed_runs
from bench.report import Goal, Report, Row, median_of
from bench.tls_comparison import compare_tls

ACCOUNTS = 10_000
DEPOSIT = "ledger.v1.CommandService/Deposit"
ACCOUNT_PREFIX = "bench-"
# ghz has no UUIDv7: one from the call's time in ms and the random digits of its UUIDv4 (whose
# variant bits are v7's too).
COMMAND_ID_V7 = (
    "{{ $t := printf `%012x` .TimestampUnixMilli }}{{ substr 0 8 $t }}-{{ substr 8 12 $t }}"
    "-7{{ substr 15 18 .UUID }}-{{ substr 19 23 .UUID }}-{{ substr 24 36 .UUID }}"
)
# Per request: a fresh command id, one of the 10,000 accounts at random.
DEPOSIT_DATA = json.dumps(
    {
        "command_id": COMMAND_ID_V7,
        "account_id": f"{ACCOUNT_PREFIX}{{{{randomInt 0 {ACCOUNTS}}}}}",
        "amount": "1.00",
    }
)
GOAL_COMMANDS_PER_S = 5_000
GOAL_RATIO = 0.6
GOAL_STEADY_P99_MS = 20.0
STEADY_RPS = 1_000


@dataclass(frozen=True)
class Plan(ComparisonPlan):
    first_warmup_s: float
    steady_seconds: float
    steady_runs: int


FULL = Plan(
    clients=(1, 16, 64),
    runs=5,
    seconds=6,
    warmup_s=3,
    first_warmup_s=60,
    steady_seconds=20,
    steady_runs=3,
)
QUICK = Plan(
    clients=(1, 64),
    runs=1,
    seconds=3,
    warmup_s=1,
    first_warmup_s=8,
    steady_seconds=5,
    steady_runs=1,
)


def _deposits(clients: int, seconds: float) -> Load:
    return Load(DEPOSIT, DEPOSIT_DATA, clients, seconds)


def _measure(ghz: Path, target: Target, kafka_pid: int, load: Load) -> dict[str, float]:
    metered = metered_ghz(ghz, target.address, target.pid, kafka_pid, load, target.tls)
    return metered.figures("commands_per_s", ("server_cpu_ms", "kafka_cpu_ms", "loadgen_cpu_ms"))


def run(bench: Bench, report: Report) -> None:
    plan = QUICK if bench.quick else FULL
    ghz = ensure_ghz(bench.cache_dir)
    topic = bench.new_topic("commands")
    ledger = bench.command_server(topic)
    noop = bench.noop_server()
    # Its own topic: two command servers on one would fence each other's transactional ids.
    tls_topic = bench.new_topic("commands_tls")
    tls_ledger = bench.command_server(tls_topic, secure=True)
    report.settings["commands"] = {
        "accounts": ACCOUNTS,
        "plan": asdict(plan),
        "deposit_data": DEPOSIT_DATA,
        "topic": topic,
        "tls_topic": tls_topic,
    }
    # The command servers then start on those logs, as after a restart.
    for log in (topic, tls_topic):
        opened = bench.open_accounts(log, ACCOUNTS, ACCOUNT_PREFIX)
        print(f"opened {ACCOUNTS:,} accounts in {log} in {opened.seconds:.1f}s", flush=True)
    with running(ledger) as ledger_pid, running(noop) as noop_pid:
        kafka_pid = bench.kafka_pid()

        def measure(target: Target, load: Load) -> dict[str, float]:
            return _measure(ghz, target, kafka_pid, load)

        targets = (
            Target("ledger", ledger.address, ledger_pid),
            Target("noop", noop.address, noop_pid),
        )
        # A fresh JVM spends its first minute compiling: load Kafka through the command server
        # before the first figure is taken (the no-op server needs no more than a short one).
        for target in targets:
            seconds = plan.first_warmup_s if target.name == "ledger" else plan.warmup_s
            measure(target, Load(DEPOSIT, DEPOSIT_DATA, 64, seconds))
        for clients in plan.clients:
            runs = warmed_runs(targets, plan, _deposits, clients, measure)
            ledger_median = median_of(runs["ledger"])
            noop_median = median_of(runs["noop"])
            ledger_median["ratio"] = paired_median(
                runs,
                "ratio",
                lambda ledger, noop: ledger["commands_per_s"] / noop["commands_per_s"],
            )
            ledger_median["cpu_ratio"] = paired_median(
                runs,
                "cpu_ratio",
                lambda ledger, noop: noop["server_cpu_ms"] / ledger["server_cpu_ms"],
            )
            load_text = f"{clients} clients"
            report.rows.append(Row("commands", "ledger", load_text, ledger_median, runs["ledger"]))
            report.rows.append(Row("commands", "noop", load_text, noop_median, runs["noop"]))
            print(
                f"  {clients:>2} clients: ledger {ledger_median['commands_per_s']:,.0f}/s "
                f"p99 {ledger_median['p99_ms']:.1f} ms, "
                f"noop {noop_median['commands_per_s']:,.0f}/s",
                flush=True,
            )
        # Enough workers that the rate never waits for a slow answer.
        steady_load = Load(DEPOSIT, DEPOSIT_DATA, 64, plan.steady_seconds, rps=STEADY_RPS)
        steady = interleaved(targets, plan.steady_runs, steady_load, measure)
        for name in ("ledger", "noop"):
            report.rows.append(
                Row("steady", name, f"{STEADY_RPS:,}/s", median_of(steady[name]), steady[name])
            )
        with running(tls_ledger) as tls_pid:
            tls_goal = compare_tls(
                report,
                "commands_tls",
                "Deposit",
                (
                    Target("tls", tls_ledger.address, tls_pid, bench.ghz_tls("writer")),
                    Target("plaintext", ledger.address, ledger_pid),
                ),
                plan,
                _deposits,
                measure,
                ("commands_per_s", "server_cpu_ms"),
            )
    best = max(
        (row for row in report.rows if row.scenario == "commands" and row.target == "ledger"),
        key=lambda row: row.metrics["commands_per_s"],
    )
    report.goals.append(
        Goal(f"commands/s ({best.load})", best.metrics["commands_per_s"], GOAL_COMMANDS_PER_S, True)
    )
    report.goals.append(
        Goal(f"ratio to no-op ({best.load})", best.metrics["ratio"], GOAL_RATIO, True, "x")
    )
    noop_best = next(
        row
        for row in report.rows
        if row.scenario == "commands" and row.target == "noop" and row.load == best.load
    )
    report.notes.append(
        f"server CPU per call, no-op over ledger ({best.load}): {best.metrics['cpu_ratio']:.2f}; "
        "were the server's CPU the only limit, the throughput ratio would be this"
    )
    report.notes.append(
        f"the no-op gRPC server answered {noop_best.metrics['commands_per_s']:,.0f} calls/s "
        f"({best.load}) on this machine: the ceiling of a Python grpc.aio server here, against "
        f"which the {GOAL_COMMANDS_PER_S:,} commands/s goal is to be read"
    )
    report.goals.append(tls_goal)
    steady_ledger = next(r for r in report.rows if r.scenario == "steady" and r.target == "ledger")
    steady_noop = next(r for r in report.rows if r.scenario == "steady" and r.target == "noop")
    report.notes.append(
        f"at {STEADY_RPS:,} calls/s the no-op server's own p99 was "
        f"{steady_noop.metrics['p99_ms']:.1f} ms: the floor this machine puts under that goal"
    )
    report.goals.append(
        Goal(
            f"p99 ack at {STEADY_RPS:,} commands/s",
            steady_ledger.metrics.get("p99_ms", math.nan),
            GOAL_STEADY_P99_MS,
            False,
            " ms",
        )
    )
