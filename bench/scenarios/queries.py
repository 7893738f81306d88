"""Scenario 4: GetAccount over a populated read model, beside a no-op gRPC server.

10,000 accounts are opened by producing their AccountOpened events into a fresh topic
(bench.loader), a projector writes them into a fresh database and is stopped once its
checkpoints cover the topic (so that it takes no CPU from the measurement), then the query
server and the no-op server (bench/noop_server.py, answering a fixed GetAccountResponse) get
the same ghz load, run by run interleaved: GetAccount of a random one of the accounts, without
a consistency token, at each client count. The ratio is the median over adjacent pairs of runs,
as in the commands scenario. Then a query server serving TLS and verifying tokens is compared with
the plaintext one at 64 clients (bench/tls_comparison.py).
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import asdict
from pathlib import Path

from bench.ghz import QUERIES_PROTO, Load, ensure_ghz
from bench.harness import Bench, metered_ghz, running, running_all
from bench.log_scan import scan
from bench.noop_comparison import ComparisonPlan, Target, paired_median, warmed_runs
from bench.report import Goal, Report, Row, median_of
from bench.tls_comparison import compare_tls

ACCOUNTS = 10_000
ACCOUNT_PREFIX = "query-"
GET_ACCOUNT = "ledger.v1.QueryService/GetAccount"
# Per request: one of the accounts at random.
GET_ACCOUNT_DATA = json.dumps({"account_id": f"{ACCOUNT_PREFIX}{{{{randomInt 0 {ACCOUNTS}}}}}"})
GOAL_QUERIES_PER_S = 5_000
GOAL_P99_MS = 10.0


FULL = ComparisonPlan(clients=(16, 64), runs=3, seconds=6, warmup_s=3)
QUICK = ComparisonPlan(clients=(16, 64), runs=1, seconds=2, warmup_s=1)


def _measure(ghz: Path, target: Target, postgres_pid: int, load: Load) -> dict[str, float]:
    metered = metered_ghz(ghz, target.address, target.pid, postgres_pid, load, target.tls)
    return metered.figures(
        "queries_per_s", ("query_cpu_ms", "postgres_cpu_ms", "loadgen_query_cpu_ms")
    )


def _load(clients: int, seconds: float) -> Load:
    return Load(GET_ACCOUNT, GET_ACCOUNT_DATA, clients, duration_s=seconds, proto=QUERIES_PROTO)


def _compare(
    bench: Bench, report: Report, plan: ComparisonPlan, ghz: Path, topic: str, database_url: str
) -> Goal:
    """The no-op comparison, then the TLS one; returns the TLS comparison's goal."""
    query_server = bench.query_server(topic, database_url)
    noop = bench.noop_server()
    with running_all([query_server, noop]) as pids:
        postgres_pid = bench.postgres_pid()

        def measure(target: Target, load: Load) -> dict[str, float]:
            return _measure(ghz, target, postgres_pid, load)

        targets = (
            Target("ledger", query_server.address, pids[0]),
            Target("noop", noop.address, pids[1]),
        )
        for clients in plan.clients:
            runs = warmed_runs(targets, plan, _load, clients, measure)
            ledger_median = median_of(runs["ledger"])
            noop_median = median_of(runs["noop"])
            ledger_median["ratio"] = paired_median(
                runs, "ratio", lambda ledger, noop: ledger["queries_per_s"] / noop["queries_per_s"]
            )
            load_text = f"{clients} clients"
            report.rows.append(Row("queries", "ledger", load_text, ledger_median, runs["ledger"]))
            report.rows.append(Row("queries", "noop", load_text, noop_median, runs["noop"]))
            print(
                f"  {clients:>2} clients: query server {ledger_median['queries_per_s']:,.0f}/s "
                f"p99 {ledger_median['p99_ms']:.1f} ms, noop {noop_median['queries_per_s']:,.0f}/s",
                flush=True,
            )
        tls_server = bench.query_server(topic, database_url, secure=True)
        with running(tls_server) as tls_pid:
            return compare_tls(
                report,
                "queries_tls",
                "GetAccount",
                (
                    Target("tls", tls_server.address, tls_pid, bench.ghz_tls("reader")),
                    Target("plaintext", query_server.address, pids[0]),
                ),
                plan,
                _load,
                measure,
                ("queries_per_s", "query_cpu_ms"),
            )


async def _populate_and_compare(
    bench: Bench,
    report: Report,
    plan: ComparisonPlan,
    ghz: Path,
    topic: str,
    last_offsets: dict[int, int],
) -> Goal:
    async with bench.projected_database(topic, "queries", last_offsets, 300) as database_url:
        # ghz and the servers run in other processes: blocking this loop meanwhile is fine.
        return _compare(bench, report, plan, ghz, topic, database_url)


def run(bench: Bench, report: Report) -> None:
    plan = QUICK if bench.quick else FULL
    ghz = ensure_ghz(bench.cache_dir)
    topic = bench.new_topic("queries")
    report.settings["queries"] = {
        "accounts": ACCOUNTS,
        "plan": asdict(plan),
        "get_account_data": GET_ACCOUNT_DATA,
        "topic": topic,
    }
    bench.open_accounts(topic, ACCOUNTS, ACCOUNT_PREFIX)
    last_offsets = scan(bench.stack.kafka_bootstrap, topic, keep_values=False).last_offsets
    tls_goal = asyncio.run(_populate_and_compare(bench, report, plan, ghz, topic, last_offsets))
    rows = [row for row in report.rows if row.scenario == "queries"]
    best = max(
        (row for row in rows if row.target == "ledger"),
        key=lambda row: row.metrics["queries_per_s"],
    )
    noop_best = next(r for r in rows if r.target == "noop" and r.load == best.load)
    report.goals.append(
        Goal(
            f"GetAccount queries/s ({best.load})",
            best.metrics["queries_per_s"],
            GOAL_QUERIES_PER_S,
            True,
        )
    )
    report.goals.append(
        Goal(f"GetAccount p99 ({best.load})", best.metrics["p99_ms"], GOAL_P99_MS, False, " ms")
    )
    report.goals.append(tls_goal)
    report.notes.append(
        f"the no-op gRPC server answered {noop_best.metrics['queries_per_s']:,.0f} GetAccount/s "
        f"({best.load}, p99 {noop_best.metrics['p99_ms']:.1f} ms): the ceiling of a Python "
        f"grpc.aio server here, against which the {GOAL_QUERIES_PER_S:,}/s goal is to be read"
    )
