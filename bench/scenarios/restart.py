"""Scenario 5: how long the command server takes to serve again with N events in its log.

The log is filled directly (bench.loader), then the command server is started on it and timed
from launch until grpc.health.v1 says SERVING, three ways: cold (no snapshot yet: it folds the
whole log, then snapshots it), after a clean stop (the stop snapshots everything), and after a
crash at the worst moment (a snapshot plus almost a whole snapshot interval of events to replay,
appended here behind its back). The baseline is a plain read_committed consumer reading the
same records without decoding them: the floor that any full replay from Kafka pays.
"""

from __future__ import annotations

import re
import time

from bench.harness import Bench
from bench.loader import EVENTS_PER_ACCOUNT, load_in_processes
from bench.log_scan import scan
from bench.report import Goal, Report, Row, median_of
from devstack.ledger_services import LedgerService, grpc_serving
from devstack.ports import LOOPBACK, free_port
from ledger.auth.local import ensure_key_encryption_key

GOAL_SECONDS = 5.0
GOAL_EVENTS = 1_000_000
FULL_SIZES = (100_000, 1_000_000)
QUICK_SIZES = (30_000,)
# The command server's default: a crash loses at most this many events' worth of snapshot.
SNAPSHOT_EVERY = 10_000
CRASH_TAIL = SNAPSHOT_EVERY - EVENTS_PER_ACCOUNT
_REBUILT = re.compile(r"rebuilt (\d+) accounts from (\d+) events .* in ([0-9.]+)s")


def fill(bench: Bench, topic: str, first_account: int, events: int) -> float:
    """Append `events` events (in whole account histories) to `topic`; returns events/s."""
    loaded = load_in_processes(
        bench.stack.kafka_bootstrap,
        bench.stack.registry_url,
        topic,
        accounts=events // EVENTS_PER_ACCOUNT,
        first_account=first_account,
    )
    return loaded.events_per_s


def raw_read_seconds(bootstrap: str, topic: str) -> tuple[float, int]:
    """Read every committed record of `topic` without decoding: (seconds, records)."""
    started = time.monotonic()
    scanned = scan(bootstrap, topic, keep_values=False)
    return time.monotonic() - started, scanned.count


def time_to_serving(bench: Bench, topic: str, timeout: float = 900) -> tuple[float, float]:
    """Start a command server on `topic`; (seconds until SERVING, replay seconds it logged)."""
    address = f"{LOOPBACK}:{free_port()}"
    env = {
        **bench.stack.environment(),
        "LEDGER_COMMAND_ADDR": address,
        "LEDGER_INSECURE": "1",  # plaintext on loopback: replay time is what is measured
        "LEDGER_TOPIC": topic,
        "LEDGER_LOG_LEVEL": "INFO",
        "LEDGER_SNAPSHOT_EVERY_EVENTS": str(SNAPSHOT_EVERY),
        # The key that seals owners (decision 14): without one the server refuses to start.
        "LEDGER_KEY_ENCRYPTION_KEY_FILE": str(
            ensure_key_encryption_key(bench.stack.data_dir / "key-encryption.key")
        ),
    }
    service = LedgerService(
        "command-server",
        "command_server",
        env=env,
        log_file=bench.work_dir / f"restart-{topic}" / "command-server.log",
        address=address,
        ready=grpc_serving(address),
        start_timeout=timeout,
    )
    probe = grpc_serving(address)
    started = time.monotonic()
    service.launch()
    try:
        while not probe():
            if not service.is_running():
                raise RuntimeError(f"the command server exited: {service.log_text()[-2000:]}")
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"not SERVING after {timeout:.0f}s")
            time.sleep(0.05)
        elapsed = time.monotonic() - started
    finally:
        service.stop()
    # The log file collects every start on this topic: the last rebuild line is this one's.
    found = _REBUILT.findall(service.log_text())
    replay = float(found[-1][2]) if found else float("nan")
    return elapsed, replay


def run(bench: Bench, report: Report) -> None:
    sizes = QUICK_SIZES if bench.quick else FULL_SIZES
    restarts = 1 if bench.quick else 2
    topic = bench.new_topic("restart")
    report.settings["restart"] = {
        "sizes": list(sizes),
        "restarts_per_size": restarts,
        "events_per_account": EVENTS_PER_ACCOUNT,
        "snapshot_every_events": SNAPSHOT_EVERY,
        "crash_tail_events": CRASH_TAIL,
        "topic": topic,
    }
    in_log = 0
    for size in sizes:
        # Events appended behind the command server's back: the first start replays them all.
        rate = fill(bench, topic, in_log // EVENTS_PER_ACCOUNT, size - in_log)
        in_log = size
        print(f"log holds {in_log:,} events (loaded at {rate:,.0f} events/s)", flush=True)
        raw_s, records = raw_read_seconds(bench.stack.kafka_bootstrap, topic)
        load_text = f"{in_log:,} events"
        cold_s, cold_replay_s = time_to_serving(bench, topic)
        print(f"  cold: SERVING after {cold_s:.1f}s (replayed the log in {cold_replay_s:.1f}s)")
        report.rows.append(
            Row("restart", "ledger, no snapshot", load_text, {"seconds_to_serving": cold_s})
        )
        # That start stopped cleanly, leaving a snapshot of everything.
        runs = [_timed_restart(bench, topic) for _ in range(restarts)]
        report.rows.append(
            Row("restart", "ledger, after a clean stop", load_text, median_of(runs), runs)
        )
        # A crash just before the next snapshot leaves the most to replay: CRASH_TAIL events
        # after the last snapshot. Each run appends its own tail.
        crash_runs = []
        for _ in range(restarts):
            fill(bench, topic, in_log // EVENTS_PER_ACCOUNT, CRASH_TAIL)
            in_log += CRASH_TAIL
            crash_runs.append(_timed_restart(bench, topic))
        report.rows.append(
            Row(
                "restart",
                f"ledger, snapshot + {CRASH_TAIL:,}-event tail",
                load_text,
                median_of(crash_runs),
                crash_runs,
            )
        )
        report.rows.append(
            Row(
                "restart",
                "raw read",
                load_text,
                {"seconds_to_serving": raw_s, "events_per_s": records / raw_s},
            )
        )
    worst = report.rows[-2]
    report.goals.append(
        Goal(
            f"restart to SERVING ({worst.load}, worst case after a crash)",
            worst.metrics["seconds_to_serving"],
            GOAL_SECONDS,
            False,
            " s",
        )
    )
    if in_log < GOAL_EVENTS:
        report.goals[-1].name += f" (the goal is for {GOAL_EVENTS:,}; full mode measures it)"


def _timed_restart(bench: Bench, topic: str) -> dict[str, float]:
    serving_s, replay_s = time_to_serving(bench, topic)
    print(f"  SERVING after {serving_s:.1f}s (rebuild {replay_s:.1f}s)", flush=True)
    return {"seconds_to_serving": serving_s, "replay_s": replay_s}
