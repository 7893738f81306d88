"""`python -m bench.compare_trees --before DIR [--runs N] [--seconds S]`: the command server of
another tree against this one's, on batches, in the same minutes.

DIR holds the other tree's sources (`git archive <commit> | tar -x -C DIR`). Its command server
(and the writer process it spawns) runs with `PYTHONSAFEPATH=1 PYTHONPATH=DIR`, so that its
packages come before this tree's (installed in editable mode, found after the path). Each
server gets its own topic of 10,000 accounts; runs of ExecuteBatch load (bench/batch_client.py,
closed loop) alternate between them, and the figure is the median over adjacent pairs of this
tree's commands/s and server CPU per command over the other's: on a machine shared with other
work, side by side is the only comparison that holds (docs/performance.md, "Batches (issue 22)").
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
from collections.abc import Sequence
from pathlib import Path

from bench.batch_client import Accounts, closed_loop
from bench.harness import CpuMeter, bench_environment, running_all

ACCOUNTS = 10_000
PREFIX = "compare-"
LOADS = ((100, 4), (1_000, 4))


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.compare_trees")
    parser.add_argument("--before", type=Path, required=True)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--warmup", type=float, default=20)
    args = parser.parse_args(argv)
    accounts = Accounts(PREFIX, ACCOUNTS)
    with bench_environment(quick=True) as bench:
        topics = [bench.new_topic("before"), bench.new_topic("after")]
        for topic in topics:
            bench.open_accounts(topic, ACCOUNTS, PREFIX)
        before_env = {"PYTHONSAFEPATH": "1", "PYTHONPATH": str(args.before.resolve())}
        servers = [
            bench.command_server(topics[0], before_env),
            bench.command_server(topics[1]),
        ]
        with running_all(servers) as pids:
            for server in servers:
                asyncio.run(closed_loop(server.address, accounts, 1_000, 4, args.warmup))
            for size, clients in LOADS:
                figures: list[list[tuple[float, float]]] = [[], []]
                for run in range(args.runs):
                    # Who goes first alternates, so that neither always meets the other's tail.
                    order = (0, 1) if run % 2 == 0 else (1, 0)
                    for which in order:
                        meter = CpuMeter(pids[which])
                        meter.start()
                        load = closed_loop(
                            servers[which].address, accounts, size, clients, args.seconds
                        )
                        done = asyncio.run(load)
                        meter.stop()
                        cpu_us = meter.cpu_s * 1e6 / done.ok if done.ok else float("nan")
                        figures[which].append((done.per_s, cpu_us))
                before, after = figures
                rate = statistics.median(a[0] / b[0] for a, b in zip(after, before, strict=True))
                cpu = statistics.median(a[1] / b[1] for a, b in zip(after, before, strict=True))
                print(
                    f"batches of {size:,} x {clients} clients: "
                    f"before {[round(b[0]) for b in before]} cmd/s, "
                    f"{[round(b[1]) for b in before]} server CPU µs/cmd; "
                    f"after {[round(a[0]) for a in after]} cmd/s, "
                    f"{[round(a[1]) for a in after]} µs/cmd; "
                    f"after/before: {rate:.2f}x commands/s, {cpu:.2f}x CPU per command",
                    flush=True,
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
