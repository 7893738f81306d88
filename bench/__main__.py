"""`python -m bench [--quick] [--only SCENARIO[,...]]`: run the benchmarks, print, write JSON.

Starts its own Kafka, schema registry and PostgreSQL (devstack) on free ports in a temporary
directory, measures each scenario beside its baseline in the same run, prints a table and writes
bench/results/<timestamp>.json and bench/results/latest.json.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime

from bench.harness import Bench, bench_environment
from bench.procstat import machine
from bench.report import Report, render, write
from bench.scenarios import (
    batches,
    catch_up,
    commands,
    cross_shard,
    ledger_at,
    queries,
    restart,
    sustained,
    visibility,
)

SCENARIOS: dict[str, Callable[[Bench, Report], None]] = {
    "commands": commands.run,
    "catch_up": catch_up.run,
    "visibility": visibility.run,
    "queries": queries.run,
    "restart": restart.run,
    "ledger_at": ledger_at.run,
    "cross_shard": cross_shard.run,
    "batches": batches.run,
    "sustained": sustained.run,
}


def scenario_names(text: str) -> list[str]:
    """`--only` takes names separated by spaces, commas or both."""
    names = [name for name in text.split(",") if name]
    unknown = [name for name in names if name not in SCENARIOS]
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown scenario {', '.join(unknown)} (choose from {', '.join(SCENARIOS)})"
        )
    return names


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short runs (about 4 minutes in all)")
    parser.add_argument(
        "--only",
        nargs="+",
        type=scenario_names,
        help=f"run only these scenarios, in this order (default: all: {', '.join(SCENARIOS)})",
    )
    parser.add_argument("--keep", action="store_true", help="keep the stack's data and logs")
    args = parser.parse_args(argv)
    report = Report(
        mode="quick" if args.quick else "full",
        machine=machine(),
        started_at=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    started = time.monotonic()
    with bench_environment(args.quick, keep=args.keep) as bench:
        only = [name for names in args.only for name in names] if args.only else None
        took: dict[str, float] = {}
        for name in only or list(SCENARIOS):
            print(f"== {name}", flush=True)
            scenario_started = time.monotonic()
            SCENARIOS[name](bench, report)
            took[name] = round(time.monotonic() - scenario_started, 1)
            print(f"   ({name} took {took[name]}s)", flush=True)
        report.settings["scenario_seconds"] = took
    report.settings["wall_seconds"] = round(time.monotonic() - started, 1)
    print()
    print(render(report))
    print(f"\nwrote {write(report)} ({report.settings['wall_seconds']}s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
