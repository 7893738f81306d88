"""`python -m bench.replay_rate`: how fast the command server replays the events after its
latest snapshot, on the real stack (its own Kafka and registry, as `python -m bench` starts).

A log of `--base` events is loaded and folded once (that start's clean stop writes a snapshot
of everything); then, for each tail size, that many events are appended behind the command
server's back and it is started again: it restores the snapshot and replays the tail, and logs
how long each took. Replaying is the writer's fold of events read from Kafka: tail / replay
seconds is its rate. It sets the default of LEDGER_SNAPSHOT_MIN_SECONDS (docs/performance.md,
"Batches (issue 22)", "Snapshots"): a crash replays about that many seconds of commands.
"""

from __future__ import annotations

import argparse
import re
import sys
import time
from collections.abc import Sequence

from bench.harness import Bench, bench_environment
from bench.loader import EVENTS_PER_ACCOUNT
from bench.scenarios.restart import fill

_REPLAYED = re.compile(
    r"restored partitions from snapshots in ([0-9.]+)s, replayed .* in ([0-9.]+)s"
)
_REBUILT = re.compile(r"rebuilt \d+ accounts from (\d+) events .* in ([0-9.]+)s")


def _start(bench: Bench, topic: str) -> tuple[float, int, float, float]:
    """Start and stop a command server on `topic`: (seconds to SERVING, events replayed,
    seconds restoring snapshots, seconds replaying after them)."""
    service = bench.command_server(topic, {"LEDGER_LOG_LEVEL": "INFO"})
    started = time.monotonic()
    service.start()
    serving = time.monotonic() - started
    service.stop()
    log = service.log_text()
    events = int(_REBUILT.findall(log)[-1][0])
    found = _REPLAYED.findall(log)
    restoring, replaying = (float(found[-1][0]), float(found[-1][1])) if found else (0.0, 0.0)
    return serving, events, restoring, replaying


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--base", type=int, default=100_000)
    parser.add_argument("--tails", default="25000,50000,100000,200000")
    args = parser.parse_args(argv)
    with bench_environment(quick=True) as bench:
        topic = bench.new_topic("replay")
        fill(bench, topic, 0, args.base)
        in_log = args.base
        serving, events, _, _ = _start(bench, topic)
        print(f"no snapshot: {events:,} events, SERVING in {serving:.2f}s", flush=True)
        for tail in (int(t) for t in args.tails.split(",")):
            fill(bench, topic, in_log // EVENTS_PER_ACCOUNT, tail)
            in_log += tail
            serving, events, restoring, replaying = _start(bench, topic)
            rate = events / max(replaying, 1e-9)
            snapshot = f"snapshot of {in_log - tail:,} events + a tail of {events:,}"
            times = f"restoring {restoring:.2f}s, replaying {replaying:.2f}s"
            print(f"{snapshot}: SERVING in {serving:.2f}s, {times}: {rate:,.0f} events/s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
