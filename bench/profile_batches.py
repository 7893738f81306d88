"""`python -m bench.profile_batches [--seconds S] [--size N] [--clients C] [--out DIR]`: where
the batch path's time goes.

Starts a local stack, opens 10,000 accounts, runs the command server, the projector and the
query server on them, and sends batches of Deposits (bench/batch_client.py, closed loop) while
py-spy samples each process (`py-spy record --format raw --subprocesses --nonblocking`: the
command server together with its writer process). Writes one collapsed-stack file per process
(flamegraph.pl or speedscope read them) and prints, per process, the functions where most
samples were taken: by their own time and by the time of everything they called.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import sysconfig
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from bench.batch_client import Accounts, closed_loop
from bench.harness import bench_environment, running_all
from bench.log_scan import scan
from bench.read_model_database import fresh_database, wait_covered

ACCOUNTS = 10_000
PREFIX = "profile-"
TOP = 25


def py_spy() -> Path:
    """The py-spy of this environment (a dev dependency)."""
    return Path(sysconfig.get_path("scripts")) / "py-spy"


def summarise(collapsed: Path, top: int = TOP) -> list[str]:
    """The functions with most samples in a collapsed-stack file: by own time, then by total."""
    own: Counter[str] = Counter()
    total: Counter[str] = Counter()
    samples = 0
    for line in collapsed.read_text().splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        frames = stack.split(";")
        samples += count
        own[frames[-1]] += count
        for frame in set(frames):
            total[frame] += count
    if not samples:
        return [f"{collapsed.name}: no samples"]
    lines = [f"{collapsed.name}: {samples} samples", "  own time:"]
    lines += [f"    {100 * n / samples:5.1f}%  {frame}" for frame, n in own.most_common(top)]
    lines.append("  including callees:")
    lines += [f"    {100 * n / samples:5.1f}%  {frame}" for frame, n in total.most_common(top)]
    return lines


async def _profile(args: argparse.Namespace) -> tuple[float, list[str]]:
    """Run the load while py-spy records; (commands/s, the processes' names)."""
    out: Path = args.out
    with bench_environment(quick=True) as bench:
        topic = bench.new_topic("profile")
        bench.open_accounts(topic, ACCOUNTS, PREFIX)
        last_offsets = scan(bench.stack.kafka_bootstrap, topic, keep_values=False).last_offsets
        async with fresh_database(bench.stack, "profile") as database_url:
            services = {
                "command-server": bench.command_server(topic),
                "projector": bench.projector(topic, database_url),
                "query-server": bench.query_server(topic, database_url),
            }
            with running_all(list(services.values())) as pids:
                await wait_covered(database_url, topic, last_offsets, timeout_s=120)
                accounts = Accounts(PREFIX, ACCOUNTS)
                address = services["command-server"].address
                # Warm: a fresh Kafka JVM is slow for its first minute.
                await closed_loop(address, accounts, args.size, args.clients, args.warmup)
                recorders = [
                    await asyncio.create_subprocess_exec(
                        str(py_spy()),
                        "record",
                        "--format=raw",
                        "--subprocesses",
                        "--nonblocking",
                        f"--duration={args.seconds}",
                        f"--pid={pid}",
                        f"--output={out / f'{name}.txt'}",
                        stdout=asyncio.subprocess.DEVNULL,
                    )
                    for name, pid in zip(services, pids, strict=True)
                ]
                done = await closed_loop(address, accounts, args.size, args.clients, args.seconds)
                for recorder in recorders:
                    await asyncio.wait_for(recorder.wait(), args.seconds + 60)
    return done.per_s, list(services)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_batches")
    parser.add_argument("--seconds", type=int, default=20)
    parser.add_argument("--warmup", type=float, default=20)
    parser.add_argument("--size", type=int, default=1_000)
    parser.add_argument("--clients", type=int, default=4)
    parser.add_argument("--out", type=Path, default=Path("bench/results/profile"))
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    rate, names = asyncio.run(_profile(args))
    print(f"{rate:,.0f} commands/s in batches of {args.size} from {args.clients} clients")
    for name in names:
        print("\n".join(summarise(args.out / f"{name}.txt")))
    return 0


if __name__ == "__main__":
    sys.exit(main())
