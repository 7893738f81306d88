"""A quick before/after probe of projector catch-up and of decoding (not part of `make bench`).

    python bench/catchup_probe.py decode [--events N]
    python bench/catchup_probe.py catchup [--events N] [--runs R]
                                          [--source NAME=DIR[@BATCH][#INSTANCES] ...]

`decode` times `EventCodec` on N encoded events (µs/event; `decode_batch` too where the code
has it). `catchup` starts a local stack, loads N events once with `bench.loader`, then per round
and per source launches `python -m projector` on a fresh database and consumer group, with
PYTHONPATH=DIR (so an exported older tree can be compared in the same minutes) and
LEDGER_PROJECTOR_BATCH=BATCH if given, and times it until the read model holds every event; it
also times a raw COPY of the same movement rows. With #INSTANCES, that many projectors share the
consumer group (and the partitions) and their CPU is summed. Medians are printed, and each run's
CPU per event of the projectors' main threads, their other Python threads (the consumer's) and
librdkafka's. Run it as a script so that PYTHONPATH, not this tree, decides which code is
measured.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import tempfile
import time
import timeit
import uuid
from pathlib import Path
from typing import Any, NamedTuple

ROOT = Path(__file__).resolve().parent.parent
PER_ACCOUNT = 100


def decode_figures(events: int) -> None:
    from bench.loader import histories
    from ledger.events.codec import EventCodec
    from tests.unit.conftest import InMemorySchemaStore

    codec = EventCodec(InMemorySchemaStore())
    codec.register()
    values = [codec.encode(e) for e in histories(0, events // PER_ACCOUNT, PER_ACCOUNT)]
    timings = {"decode": lambda: [codec.decode(v) for v in values]}
    batch = getattr(codec, "decode_batch", None)
    if batch is not None:
        timings["decode_batch"] = lambda: batch(values)
    for name, run in timings.items():
        best = min(timeit.repeat(run, number=1, repeat=5, timer=time.process_time))
        print(f"{name}: {best / len(values) * 1e6:.2f} µs/event over {len(values)} events")


async def _fresh_database(admin_url: str, base_url: str) -> str:
    import asyncpg

    name = f"probe_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(admin_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return f"{base_url.rsplit('/', 1)[0]}/{name}"


async def _loaded(url: str) -> tuple[int, bool]:
    import asyncpg

    try:
        connection = await asyncpg.connect(url)
    except Exception:
        return 0, False
    try:
        total = await connection.fetchval("SELECT coalesce(sum(version), 0) FROM ledger.accounts")
        return int(total), True
    except Exception:
        return 0, False
    finally:
        await connection.close()


def _one_catchup(
    stack: Any,
    work: Path,
    topic: str,
    source: Path,
    events: int,
    profile: Path | None,
    extra_env: dict[str, str],
    instances: int = 1,
) -> dict[str, float]:
    from bench.procstat import cpu_seconds, tree_cpu_seconds
    from devstack.ledger_services import LedgerService
    from devstack.process import clean_environment

    url = asyncio.run(_fresh_database(stack.database_url, stack.database_url))
    env = {
        "LEDGER_DATABASE_URL": url,
        "LEDGER_PROJECTOR_GROUP": f"probe-{uuid.uuid4().hex[:8]}",
        "LEDGER_LOG_LEVEL": "WARNING",
        "PYTHONPATH": str(source),
        **extra_env,
    }
    services = [
        LedgerService.projector(stack, work, topic=topic, extra_env=env, name=f"projector-{n}")
        for n in range(instances)
    ]
    started = time.monotonic()
    # A probe: nothing public names the processes.
    pg_pid = stack.postgres._process.pid
    pg_cpu = tree_cpu_seconds(pg_pid)
    spy = None
    first = None
    try:
        pids = []
        for service in services:
            # From the tree's own directory: `python -m` puts the working directory ahead of
            # PYTHONPATH.
            service._process.launch(
                [sys.executable, "-m", "projector"], env=clean_environment(service.env), cwd=source
            )
            pid = service._process.pid
            if pid is None:
                raise RuntimeError(f"projector exited at once: {service.log_text()[-2000:]}")
            pids.append(pid)
        if profile is not None:
            spy = subprocess.Popen(
                [
                    str(Path(sys.executable).parent / "py-spy"),
                    "record",
                    "--threads",
                    "--idle",
                    "-f",
                    "speedscope",
                    "-o",
                    str(profile),
                    "--pid",
                    str(pids[0]),
                ],
                stdout=subprocess.DEVNULL,
            )
        while True:
            total, _ = asyncio.run(_loaded(url))
            now = time.monotonic()
            if total and first is None:
                first = now
            if total >= events:
                break
            stopped = [service for service in services if not service.is_running()]
            if now - started > 900 or stopped:
                log = (stopped or services)[0].log_text()[-2000:]
                raise RuntimeError(f"projector stuck at {total}: {log}")
            time.sleep(0.2)
        projector_cpu = sum(cpu_seconds(p) for p in pids)
        threads = _thread_cpu(pids)
        threads["exited"] = projector_cpu - sum(threads.values())
        pg_cpu = tree_cpu_seconds(pg_pid) - pg_cpu
    finally:
        done = time.monotonic()
        if spy is not None:
            spy.send_signal(2)
            spy.wait(60)
        for service in services:
            service.stop()
    return {
        "total_s": round(done - started, 2),
        "events_per_s": round(events / (done - started)),
        # After the first commit: without the start-up (imports, migrations, joining the group).
        "applying_per_s": round(events / (done - first)) if first else 0,
        # CPU per event moves far less than wall time on a shared machine.
        "projector_cpu_us": round(projector_cpu / events * 1e6, 1),
        "postgres_cpu_us": round(pg_cpu / events * 1e6, 1),
        **{f"{name}_cpu_us": round(seconds / events * 1e6, 1) for name, seconds in threads.items()},
    }


def _thread_cpu(pids: list[int]) -> dict[str, float]:
    """CPU seconds of the processes' live threads: each main thread (the event loop, and the
    start-up), their other Python threads (the consumer's, and asyncio's executor), librdkafka's.
    Threads that ended (the start-up's Kafka admin client, say) are not counted."""
    from bench.procstat import thread_cpu_seconds

    totals = {"main": 0.0, "other": 0.0, "librdkafka": 0.0}
    for pid in pids:
        for thread, name, seconds in thread_cpu_seconds(pid):
            kind = "main" if thread == pid else "librdkafka" if name.startswith("rdk:") else "other"
            totals[kind] += seconds
    return totals


async def _raw_copy(base_url: str, admin_url: str, events: int) -> float:
    import asyncpg

    from bench.loader import histories
    from ledger.events.records import MoneyDeposited

    rows = [
        (
            *(uuid.UUID(e.event_id), e.account_id, e.version, "DEPOSIT", e.amount),
            *(e.balance_after, 2, e.occurred_at, None, None, e.command_id, 0, n),
        )
        for n, e in enumerate(histories(0, events // PER_ACCOUNT, PER_ACCOUNT))
        if isinstance(e, MoneyDeposited)
    ]
    url = await _fresh_database(admin_url, base_url)
    connection = await asyncpg.connect(url)
    try:
        await connection.execute(
            "CREATE TABLE raw (event_id uuid, account_id text, version bigint, kind text, "
            "amount bigint, balance_after bigint, exponent integer, occurred_at timestamptz, "
            "counterparty_id text, transfer_id text, command_id text, partition integer, "
            '"offset" bigint)'
        )
        started = time.monotonic()
        for start in range(0, len(rows), 50_000):
            await connection.copy_records_to_table("raw", records=rows[start : start + 50_000])
        return events / (time.monotonic() - started)
    finally:
        await connection.close()


class Source(NamedTuple):
    """A tree to measure, as `--source NAME=DIR[@BATCH][#INSTANCES]` gives it."""

    tree: Path
    batch: str
    instances: int


def parse_source(spec: str) -> Source:
    """The source in `DIR[@BATCH][#INSTANCES]`; ValueError if INSTANCES is not a count."""
    spec, _, instances = spec.partition("#")
    tree, _, batch = spec.partition("@")
    count = int(instances or 1)
    if count < 1:
        raise ValueError(f"#INSTANCES must be at least 1, not {count}")
    return Source(Path(tree).resolve(), batch, count)


def catchup_figures(
    events: int, runs: int, sources: dict[str, Source], profile: Path | None = None
) -> None:
    from bench.loader import load
    from devstack import LocalStack, StackPorts, default_cache_dir

    with (
        tempfile.TemporaryDirectory(prefix="catchup-probe-") as scratch,
        LocalStack(Path(scratch) / "stack", StackPorts.free(), default_cache_dir()) as stack,
    ):
        topic = f"probe_{uuid.uuid4().hex[:8]}"
        loaded = load(
            stack.kafka_bootstrap,
            stack.registry_url,
            topic,
            first_account=0,
            accounts=events // PER_ACCOUNT,
        )
        print(f"loaded {loaded.events} events in {loaded.seconds:.1f}s", flush=True)
        figures: dict[str, list[float]] = {name: [] for name in [*sources, "raw COPY"]}
        cpu: dict[str, list[tuple[float, float]]] = {name: [] for name in sources}
        for round_ in range(runs):
            for name, source in sources.items():
                run = _one_catchup(
                    stack,
                    Path(scratch) / name,
                    topic,
                    source.tree,
                    loaded.events,
                    profile and profile.with_name(f"{profile.stem}-{name}-{round_}.json"),
                    {"LEDGER_PROJECTOR_BATCH": source.batch} if source.batch else {},
                    source.instances,
                )
                figures[name].append(run["events_per_s"])
                cpu[name].append((run["projector_cpu_us"], run["postgres_cpu_us"]))
                print(f"round {round_} {name}: {run}", flush=True)
            rate = asyncio.run(_raw_copy(stack.database_url, stack.database_url, loaded.events))
            figures["raw COPY"].append(rate)
            print(f"round {round_} raw COPY: {rate:,.0f} events/s", flush=True)
        for name, rates in figures.items():
            print(f"{name}: median {statistics.median(rates):,.0f} events/s of {rates}")
        for name, pairs in cpu.items():
            projector = statistics.median(p for p, _ in pairs)
            postgres = statistics.median(q for _, q in pairs)
            print(f"{name}: median CPU µs/event: projector {projector}, PostgreSQL {postgres}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("what", choices=["decode", "catchup"])
    parser.add_argument("--events", type=int, default=200_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument(
        "--source", action="append", default=[], help="NAME=DIR[@BATCH][#INSTANCES]"
    )
    parser.add_argument(
        "--profile", type=Path, help="py-spy each run's first projector into PATH-*"
    )
    args = parser.parse_args()
    if args.what == "decode":
        decode_figures(args.events)
        return
    specs = dict(source.split("=", 1) for source in args.source) or {"this": str(ROOT)}
    sources = {}
    for name, spec in specs.items():
        try:
            sources[name] = parse_source(spec)
        except ValueError as error:
            parser.error(f"--source {name}: {error}")
    catchup_figures(args.events, args.runs, sources, args.profile)


if __name__ == "__main__":
    # Run as a script: the tree under test comes first (PYTHONPATH), this one after it.
    sys.path[0:1] = [str(ROOT)] if not os.environ.get("PYTHONPATH") else []
    if os.environ.get("PYTHONPATH"):
        sys.path.insert(1, str(ROOT))
    main()
