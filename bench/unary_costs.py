"""`python -m bench.unary_costs [--rounds N] [--seconds S] [--py-spy DIR] [--env K=V]`:
where the CPU of one Deposit goes, per process and per thread, beside the no-op gRPC server.

It starts the stack once, opens 10,000 accounts, starts the command server and the no-op
server, warms both, then alternates ghz runs of Deposits at 64 clients between them. For each
run it prints the calls/s, the ledger's ratio to the no-op run after it, and the CPU µs per
successful call of: ghz, every thread of the gRPC process and of the writer process (by
/proc/<pid>/task/<tid>/comm, threads of one name summed), the no-op server, and Kafka's JVM (its
threads grouped by name with the digits taken out). Medians over the rounds close the output.

`--py-spy DIR`, after the rounds: one more ledger run under `py-spy record --native` of the gRPC
process and of the writer (raw collapsed stacks, `--idle` for the writer so that its waits show),
written to DIR. py-spy costs CPU itself: those runs are not among the figures.

Run it from a tree's directory to measure that tree's code (the servers are spawned from it),
under the machine's bench lock: `flock /tmp/bench.lock .venv/bin/python -m bench.unary_costs`.
"""

from __future__ import annotations

import argparse
import re
import statistics
import subprocess
import sys
import urllib.request
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from bench.ghz import Load, ensure_ghz, run_ghz
from bench.harness import Bench, bench_environment, running_all
from bench.procstat import thread_cpu_seconds
from bench.scenarios.commands import ACCOUNT_PREFIX, ACCOUNTS, DEPOSIT, DEPOSIT_DATA
from devstack.ledger_services import LedgerService

_NOT_CPU = {"calls_per_s", "p50_ms", "errors", "ratio", "commands_per_batch", "commit_ms"}
Threads = dict[str, float]
"""CPU seconds by '<process>/<thread name>'."""


def _writer_of(server_pid: int) -> int:
    """The writer process the command server spawned (multiprocessing's `spawn_main`)."""
    for child in Path(f"/proc/{server_pid}/task/{server_pid}/children").read_text().split():
        if b"spawn_main" in Path(f"/proc/{child}/cmdline").read_bytes():
            return int(child)
    raise LookupError(f"no writer process under {server_pid}")


def _threads(processes: dict[str, int]) -> Threads:
    found: Threads = defaultdict(float)
    for process, pid in processes.items():
        for tid, name, cpu in thread_cpu_seconds(pid):
            if process == "kafka":
                name = re.sub(r"\d+", "N", name)
            elif tid == pid:
                name = "main"
            found[f"{process}/{name}"] += cpu
    return found


def _batches(metrics: str | None) -> tuple[float, float, float]:
    """(batches, commands, commit seconds) the command server counted so far (its metrics)."""
    if metrics is None:
        return 0.0, 0.0, 0.0
    with urllib.request.urlopen(f"http://{metrics}/metrics", timeout=10) as response:
        text = response.read().decode()
    values = {}
    for name in (
        "ledger_command_batch_size_count",
        "ledger_command_batch_size_sum",
        "ledger_command_commit_seconds_sum",
    ):
        found = re.search(rf"^{name}(?:{{[^}}]*}})? (\S+)$", text, re.MULTILINE)
        values[name] = float(found.group(1)) if found else 0.0
    return tuple(values.values())  # type: ignore[return-value]


def _run(
    ghz: Path,
    address: str,
    seconds: float,
    processes: dict[str, int],
    clients: int,
    metrics: str | None = None,
) -> dict[str, float]:
    """One ghz run: calls/s, and CPU µs per successful call by process and by thread; for the
    command server (`metrics`: its metrics address) also its batches' size and commit time."""
    before, batches_before = _threads(processes), _batches(metrics)
    run = run_ghz(ghz, address, Load(DEPOSIT, DEPOSIT_DATA, clients, seconds))
    after, batches_after = _threads(processes), _batches(metrics)
    ok = max(run.ok, 1)
    figures = {"calls_per_s": run.ok_rps, "p50_ms": run.p50_ms, "errors": run.count - run.ok}
    batches, commands, commit_s = (
        a - b for a, b in zip(batches_after, batches_before, strict=True)
    )
    if batches:
        figures["commands_per_batch"] = commands / batches
        figures["commit_ms"] = commit_s * 1000 / batches
    figures["ghz"] = run.cpu_s * 1e6 / ok
    totals: dict[str, float] = defaultdict(float)
    for key, cpu in after.items():
        spent = (cpu - before.get(key, 0.0)) * 1e6 / ok
        totals[key.split("/", 1)[0]] += spent
        if spent >= 1.0:  # threads under 1 µs per call are noise here
            figures[key] = spent
    figures.update({f"{process} (all)": us for process, us in totals.items()})
    return figures


def _print_run(name: str, figures: dict[str, float]) -> None:
    print(
        f"{name}: {figures['calls_per_s']:,.0f} calls/s, p50 {figures['p50_ms']:.1f} ms, "
        f"{figures['errors']:.0f} errors",
        flush=True,
    )


def _medians(runs: list[dict[str, float]]) -> dict[str, float]:
    keys = {key for run in runs for key in run}
    return {key: statistics.median(run.get(key, 0.0) for run in runs) for key in sorted(keys)}


def _profile(
    ghz: Path, address: str, pids: dict[str, int], clients: int, seconds: float, out: Path
) -> None:
    """A ledger run with py-spy recording the gRPC process (native frames) and the writer."""
    out.mkdir(parents=True, exist_ok=True)
    spy = Path(sys.executable).parent / "py-spy"
    recorders = [
        subprocess.Popen(
            [
                str(spy),
                "record",
                "--native",
                *(["--idle"] if process == "writer" else []),
                "--format",
                "raw",
                "--duration",
                str(int(seconds)),
                "--rate",
                "200",
                "--pid",
                str(pid),
                "--output",
                str(out / f"{process}.txt"),
            ],
            stdout=subprocess.DEVNULL,
        )
        for process, pid in pids.items()
    ]
    run_ghz(ghz, address, Load(DEPOSIT, DEPOSIT_DATA, clients, seconds))
    for recorder in recorders:
        recorder.wait()
    print(f"py-spy profiles in {out}", flush=True)


@dataclass(frozen=True)
class _Target:
    name: str
    address: str
    processes: dict[str, int]
    """What is metered, by label (the gRPC process, the writer, Kafka; or the no-op server)."""
    metrics: str | None = None


def _ledger_target(bench: Bench, name: str, service: LedgerService, pid: int) -> _Target:
    assert service.address is not None
    processes = {"grpc": pid, "writer": _writer_of(pid), "kafka": bench.kafka_pid()}
    return _Target(name, service.address, processes, service.env["LEDGER_METRICS_ADDR"])


def _print_medians(name: str, median: dict[str, float]) -> None:
    print(f"  {name}: {median['calls_per_s']:,.0f} calls/s, p50 {median['p50_ms']:.1f} ms")
    if "ratio" in median:
        print(f"    ratio to the no-op (paired): {median['ratio']:.3f}")
    if "commands_per_batch" in median:
        print(
            f"    {median['commands_per_batch']:.1f} commands per batch, "
            f"{median['commit_ms']:.1f} ms per batch's round trip to the writer"
        )
    print("    CPU µs per call:")
    for key, value in median.items():
        if key not in _NOT_CPU:
            print(f"    {key:40} {value:7.1f}")


def measure(bench: Bench, plan: _Plan) -> None:
    ghz = ensure_ghz(bench.cache_dir)
    variants = [plan.env, *({**plan.env, **variant} for variant in plan.variants)]
    services = []
    for env in variants:
        # Each command server its own log: two on one would fence each other's producers.
        topic = bench.new_topic("unary")
        opened = bench.open_accounts(topic, ACCOUNTS, ACCOUNT_PREFIX)
        print(f"opened {ACCOUNTS:,} accounts in {opened.seconds:.1f}s", flush=True)
        services.append(bench.command_server(topic, env))
    noop = bench.noop_server()
    with running_all([*services, noop]) as pids:
        names = ["ledger", *(f"ledger {variant}" for variant in plan.variants)]
        targets = [
            _ledger_target(bench, name, service, pid)
            for name, service, pid in zip(names, services, pids, strict=False)
        ]
        assert noop.address is not None
        targets.append(
            _Target("noop", noop.address, {"noop": pids[-1], "kafka": bench.kafka_pid()})
        )
        # A fresh JVM compiles for its first minute or so: warm it through the ledgers first.
        for target in targets:
            warmup = plan.seconds / 2 if target.name == "noop" else 3 * plan.seconds
            _run(ghz, target.address, warmup, target.processes, plan.clients)
        runs: dict[str, list[dict[str, float]]] = {target.name: [] for target in targets}
        for _ in range(plan.rounds):
            for target in targets:
                figures = _run(
                    ghz,
                    target.address,
                    plan.seconds,
                    target.processes,
                    plan.clients,
                    target.metrics,
                )
                runs[target.name].append(figures)
                _print_run(f"{target.name:>12}", figures)
            for name in names:
                runs[name][-1]["ratio"] = runs[name][-1]["calls_per_s"] / figures["calls_per_s"]
        print(
            f"\nmedians over {plan.rounds} rounds of {plan.seconds:g} s at {plan.clients} clients:"
        )
        for name, target_runs in runs.items():
            _print_medians(name, _medians(target_runs))
        if plan.profile is not None:
            first = targets[0]
            processes = {label: first.processes[label] for label in ("grpc", "writer")}
            _profile(ghz, first.address, processes, plan.clients, 8, plan.profile)


@dataclass(frozen=True)
class _Plan:
    rounds: int
    seconds: float
    clients: int
    env: dict[str, str]
    """For every command server."""
    variants: list[dict[str, str]]
    """Each a further command server, with these settings as well."""
    profile: Path | None


def _settings(pairs: Sequence[str]) -> dict[str, str]:
    return dict(pair.split("=", 1) for pair in pairs)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.unary_costs")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--py-spy", type=Path, default=None, dest="profile")
    parser.add_argument("--clients", type=int, default=64)
    parser.add_argument(
        "--env", action="append", default=[], help="KEY=VALUE for the command server (repeatable)"
    )
    parser.add_argument(
        "--variant",
        action="append",
        default=[],
        help="KEY=VALUE[,KEY=VALUE]: one more command server with these settings (repeatable)",
    )
    args = parser.parse_args(argv)
    plan = _Plan(
        args.rounds,
        args.seconds,
        args.clients,
        _settings(args.env),
        [_settings(variant.split(",")) for variant in args.variant],
        args.profile,
    )
    with bench_environment(quick=True) as bench:
        measure(bench, plan)
    return 0


if __name__ == "__main__":
    sys.exit(main())
