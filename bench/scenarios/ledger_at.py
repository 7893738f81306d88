"""Scenario 6: the whole ledger as of an instant (ListBalancesAt, GetTrialBalance).

100,000 accounts with 10 deposits each, a million movements (bench.loader), are produced into
a fresh topic with their times spread evenly over the last hours (250 events a second: a busy
ledger's day compressed), the accounts taking turns: all are opened first, then each gets its
first deposit, and so on. A projector writes them into a fresh database and stops. Then,
against the query server:

- ListBalancesAt halfway through (every account open, each with half its deposits after the
  instant, so that every row needs the probe for its last movement: the costly case), every
  page (5,000 accounts, the maximum) in turn by one client, as an auditor exporting month-end
  balances would: the median over the pages of each page's rows per second (the goal's
  figure), with the slowest page and the whole listing's rate beside it. Baselines: the same
  accounts' current balances read straight from PostgreSQL with asyncpg in one statement (no
  point in time, no gRPC); and the query server's own page statement, page after page, through
  asyncpg alone (no gRPC, no messages).
- GetTrialBalance at 20 instants spread over the history, each at a random microsecond (so
  that the second being read is a partial one): the slowest call's latency. Baseline: the
  same totals summed straight over the movements table (a scan: what the per-period totals
  spare).
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from dataclasses import asdict, dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from bench.harness import Bench, running
from bench.loader import Spread, load_in_processes
from bench.log_scan import scan
from bench.read_model_database import SCHEMA
from bench.report import Goal, Report, Row
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from query_server import statements

GOAL_ROWS_PER_S = 50_000
GOAL_TRIAL_BALANCE_S = 1.0
PREFIX = "at-"
INSTANTS = 20


@dataclass(frozen=True)
class Plan:
    accounts: int
    per_account: int
    """Events per account: the opening and the deposits."""
    step_us: int
    """Microseconds between one event and the next."""
    page_size: int = 5_000

    @property
    def events(self) -> int:
        return self.accounts * self.per_account


FULL = Plan(accounts=100_000, per_account=11, step_us=4_000)
QUICK = Plan(accounts=5_000, per_account=11, step_us=4_000)

_BASELINE_BALANCES = f"SELECT account_id, currency, balance, version FROM {SCHEMA}.accounts"
_BASELINE_TOTALS = f"""
SELECT a.currency,
       sum(CASE WHEN m.kind IN ('DEPOSIT', 'TRANSFER_IN') THEN m.amount ELSE 0 END),
       sum(CASE WHEN m.kind IN ('DEPOSIT', 'TRANSFER_IN') THEN 0 ELSE m.amount END), count(*)
FROM {SCHEMA}.movements m JOIN {SCHEMA}.accounts a USING (account_id)
WHERE m.occurred_at <= $1 GROUP BY a.currency
"""


def _timestamp(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


async def _list_all(
    client: pb_grpc.QueryServiceAsyncStub, at: datetime, page_size: int
) -> tuple[int, list[float]]:
    """Every page in turn: the rows listed, and each page's rows per second."""
    rows, token, rates = 0, "", []
    while True:
        started = time.monotonic()
        page = await client.ListBalancesAt(
            pb.ListBalancesAtRequest(at=_timestamp(at), page_size=page_size, page_token=token)
        )
        rates.append(len(page.balances) / (time.monotonic() - started))
        rows += len(page.balances)
        token = page.next_page_token
        if not token:
            return rows, rates


async def _statement_pages(connection: Any, at: datetime, page_size: int) -> int:
    """The query server's own statement, page after page, through asyncpg alone."""
    rows, after = 0, ""
    while True:
        page = await connection.fetch(statements.BALANCES_AT[(False, False)], after, page_size, at)
        rows += sum(1 for record in page if record[-1])
        if len(page) < page_size:
            return rows
        after = page[-1][0]


async def _measure(
    address: str, database_url: str, plan: Plan, spread: Spread
) -> dict[str, dict[str, float]]:
    first = spread.time_of(0, 0)
    middle = spread.time_of(0, plan.per_account // 2)
    rng = random.Random(6)
    span_us = plan.events * plan.step_us
    instants = [first + timedelta(microseconds=rng.randrange(span_us)) for _ in range(INSTANTS)]
    async with grpc.aio.insecure_channel(address) as channel:
        client: pb_grpc.QueryServiceAsyncStub = pb_grpc.QueryServiceStub(channel)
        await _list_all(client, middle, plan.page_size)  # warms the caches up
        started = time.monotonic()
        rows, page_rates = await _list_all(client, middle, plan.page_size)
        listing_s = time.monotonic() - started
        latencies = []
        for at in instants:
            started = time.monotonic()
            await client.GetTrialBalance(pb.GetTrialBalanceRequest(at=_timestamp(at)))
            latencies.append(time.monotonic() - started)
    connection = await asyncpg.connect(database_url, server_settings={"search_path": SCHEMA})
    try:
        started = time.monotonic()
        statement_rows = await _statement_pages(connection, middle, plan.page_size)
        statement_s = time.monotonic() - started
        started = time.monotonic()
        baseline_rows = len(await connection.fetch(_BASELINE_BALANCES))
        baseline_listing_s = time.monotonic() - started
        started = time.monotonic()
        await connection.fetch(_BASELINE_TOTALS, instants[0])
        baseline_totals_s = time.monotonic() - started
    finally:
        await connection.close()
    return {
        "balances": {
            "rows": rows,
            "pages": len(page_rates),
            "seconds": listing_s,
            "rows_per_s": statistics.median(page_rates),
            "rows_per_s_slowest_page": min(page_rates),
            "rows_per_s_whole_listing": rows / listing_s,
        },
        "balances_statement": {
            "rows": statement_rows,
            "seconds": statement_s,
            "rows_per_s": statement_rows / statement_s,
        },
        "balances_baseline": {
            "rows": baseline_rows,
            "seconds": baseline_listing_s,
            "rows_per_s": baseline_rows / baseline_listing_s,
        },
        "trial_balance": {
            "max_ms": 1000 * max(latencies),
            "median_ms": 1000 * statistics.median(latencies),
            **{f"at_{i:02d}_ms": 1000 * latency for i, latency in enumerate(latencies)},
        },
        "trial_balance_baseline": {"ms": 1000 * baseline_totals_s},
    }


async def _populate_and_measure(
    bench: Bench, plan: Plan, topic: str, spread: Spread, last_offsets: dict[int, int]
) -> tuple[float, dict[str, dict[str, float]]]:
    """How long the projector took to write the read model, and the figures measured on it."""
    started = time.monotonic()
    async with bench.projected_database(topic, "ledger_at", last_offsets, 900) as database_url:
        projected_s = time.monotonic() - started
        query_server = bench.query_server(topic, database_url)
        with running(query_server):
            return projected_s, await _measure(query_server.address, database_url, plan, spread)


def run(bench: Bench, report: Report) -> None:
    plan = QUICK if bench.quick else FULL
    topic = bench.new_topic("ledger_at")
    now_us = (datetime.now(UTC) - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    # Whole milliseconds (the events' precision), ending a minute ago.
    start_us = (now_us - 60_000_000 - plan.events * plan.step_us) // 1000 * 1000
    spread = Spread(start_us, plan.step_us, plan.accounts)
    report.settings["ledger_at"] = {**asdict(plan), "topic": topic, "start_us": start_us}
    started = time.monotonic()
    load_in_processes(
        bench.stack.kafka_bootstrap,
        bench.stack.registry_url,
        topic,
        accounts=plan.accounts,
        per_account=plan.per_account,
        prefix=PREFIX,
        spread=spread,
    )
    loaded_s = time.monotonic() - started
    last_offsets = scan(bench.stack.kafka_bootstrap, topic, keep_values=False).last_offsets
    projected_s, figures = asyncio.run(
        _populate_and_measure(bench, plan, topic, spread, last_offsets)
    )
    # Loading is not measured against a goal, but says what a full run costs (performance.md).
    report.settings["ledger_at_load"] = {
        "loaded_seconds": round(loaded_s, 1),
        "projected_seconds": round(projected_s, 1),
    }
    print(f"  loaded in {loaded_s:.0f} s, projected in {projected_s:.0f} s", flush=True)
    load = f"{plan.accounts:,} accounts, {plan.events - plan.accounts:,} movements"
    for target, metrics in figures.items():
        report.rows.append(Row("ledger_at", target, load, metrics, [metrics]))
    balances, trial = figures["balances"], figures["trial_balance"]
    print(
        f"  ListBalancesAt {balances['rows_per_s']:,.0f} rows/s (median of "
        f"{balances['pages']:.0f} pages; slowest page {balances['rows_per_s_slowest_page']:,.0f}, "
        f"whole listing {balances['rows_per_s_whole_listing']:,.0f}) "
        f"(its statement alone {figures['balances_statement']['rows_per_s']:,.0f}, the current "
        f"balances alone {figures['balances_baseline']['rows_per_s']:,.0f}); GetTrialBalance "
        f"slowest {trial['max_ms']:.0f} ms, median {trial['median_ms']:.0f} ms (a scan of the "
        f"movements "
        f"{figures['trial_balance_baseline']['ms']:.0f} ms)",
        flush=True,
    )
    report.goals.append(
        Goal(f"ListBalancesAt rows/s ({load})", balances["rows_per_s"], GOAL_ROWS_PER_S, True)
    )
    report.goals.append(
        Goal(
            f"GetTrialBalance slowest of {INSTANTS} instants ({load})",
            trial["max_ms"],
            1000 * GOAL_TRIAL_BALANCE_S,
            False,
            " ms",
        )
    )
