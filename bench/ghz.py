"""ghz, the gRPC load generator: installed on demand, run as a child, its report parsed.

ghz is a Go program: per call it costs less CPU than the Python servers it loads (the figures are
in docs/performance.md), where a Python client would cost as much as the server. It is built with
`go install` from the Go module proxy into the git-ignored `.cache/bin`, pinned, by devstack's Go
tool installer. Its CPU use is measured from the kernel's accounting of the child (wait4), so every
table shows what the load generator itself took of the machine.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from devstack.go_tools import GoTool, ensure_go_tool
from devstack.locations import PROJECT_ROOT

PROTO_ROOT = PROJECT_ROOT / "proto"
COMMANDS_PROTO = "ledger/v1/commands.proto"
QUERIES_PROTO = "ledger/v1/queries.proto"


GHZ = GoTool("ghz", "github.com/bojand/ghz/cmd/ghz", "v0.120.0")


class GhzError(RuntimeError):
    """A ghz run failed."""


def ensure_ghz(cache_dir: Path) -> Path:
    """The ghz binary in `<cache>/bin`, built with `go install` (pinned) when it is missing."""
    return ensure_go_tool(GHZ, cache_dir)


@dataclass(frozen=True, slots=True)
class GhzRun:
    """One ghz run: what the server answered and what generating the load cost."""

    count: int
    ok: int
    errors: dict[str, int]
    rps: float
    p50_ms: float
    p99_ms: float
    wall_s: float
    """The load's duration as ghz measured it."""
    elapsed_s: float
    """The ghz process's lifetime (start-up and report included)."""
    cpu_s: float
    """User + system CPU seconds of the ghz process over its lifetime."""

    @property
    def ok_rps(self) -> float:
        """Successful calls per second of the run's duration."""
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    @property
    def cpu_cores(self) -> float:
        """Cores the load generator kept busy on average."""
        return self.cpu_s / self.elapsed_s if self.elapsed_s > 0 else 0.0


@dataclass(frozen=True, slots=True)
class Load:
    """What ghz sends: one method (of `proto`), a templated JSON body, a client count and a
    limit."""

    call: str
    data: str
    concurrency: int
    duration_s: float | None = None
    total: int | None = None
    rps: int | None = None
    connections: int = 1
    timeout_s: float = 20.0
    proto: str = COMMANDS_PROTO


@dataclass(frozen=True, slots=True)
class GhzTls:
    """How ghz reaches a server that serves TLS and checks tokens: trusting `ca`, with the call
    metadata (`authorization: Bearer <token>`) in `metadata_file`, so that the token is not on a
    command line for `ps` to show."""

    ca: Path
    metadata_file: Path

    @classmethod
    def bearer(cls, ca: Path, token: str, metadata_file: Path) -> GhzTls:
        """Write the token's metadata to `metadata_file` (readable by its owner only)."""
        descriptor = os.open(metadata_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w") as file:
            json.dump({"authorization": f"Bearer {token}"}, file)
        return cls(ca, metadata_file)

    def arguments(self) -> list[str]:
        return [f"--cacert={self.ca}", f"--metadata-file={self.metadata_file}"]


def run_ghz(binary: Path, address: str, load: Load, tls: GhzTls | None = None) -> GhzRun:
    """Run ghz against `address` (plaintext, or as `tls` says) and return its report; raises
    GhzError if ghz fails."""
    argv = [
        str(binary),
        *(["--insecure"] if tls is None else tls.arguments()),
        f"--import-paths={PROTO_ROOT}",
        f"--proto={PROTO_ROOT / load.proto}",
        f"--call={load.call}",
        f"--data={load.data}",
        f"--concurrency={load.concurrency}",
        f"--connections={load.connections}",
        f"--timeout={load.timeout_s}s",
        "--format=json",
    ]
    if load.duration_s is not None:
        # In-flight calls at the end are neither successes nor errors of the server.
        argv += [f"--duration={load.duration_s}s", "--duration-stop=ignore"]
    if load.total is not None:
        argv.append(f"--total={load.total}")
    if load.rps is not None:
        argv.append(f"--rps={load.rps}")
    argv.append(address)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        started = time.monotonic()
        process = subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err)
        try:
            _, status, usage = os.wait4(process.pid, 0)
        except BaseException:
            process.kill()
            process.wait()
            raise
        process.returncode = os.waitstatus_to_exitcode(status)
        elapsed = time.monotonic() - started
        out.seek(0)
        err.seek(0)
        report_text = out.read().decode(errors="replace")
        stderr_text = err.read().decode(errors="replace")
    if process.returncode != 0 and not report_text.strip().startswith("{"):
        raise GhzError(f"ghz exited with {process.returncode}: {stderr_text[-2000:]}")
    try:
        report = json.loads(report_text)
    except json.JSONDecodeError as exc:
        raise GhzError(f"ghz printed no JSON report: {stderr_text[-2000:]}") from exc
    return _parse(report, usage.ru_utime + usage.ru_stime, elapsed)


def _parse(report: dict[str, object], cpu_s: float, elapsed_s: float) -> GhzRun:
    statuses = report.get("statusCodeDistribution") or {}
    errors = report.get("errorDistribution") or {}
    assert isinstance(statuses, dict)
    assert isinstance(errors, dict)
    percentiles: dict[int, float] = {}
    for entry in report.get("latencyDistribution") or []:  # type: ignore[attr-defined]
        if entry:
            percentiles[int(entry["percentage"])] = float(entry["latency"]) / 1e6
    total_ns = report.get("total")
    wall = float(total_ns) / 1e9 if isinstance(total_ns, int | float) and total_ns else elapsed_s
    count = report.get("count")
    rps = report.get("rps")
    return GhzRun(
        count=int(count) if isinstance(count, int) else 0,
        ok=int(statuses.get("OK", 0)),
        errors={str(k): int(v) for k, v in errors.items()},
        rps=float(rps) if isinstance(rps, int | float) else 0.0,
        p50_ms=percentiles.get(50, float("nan")),
        p99_ms=percentiles.get(99, float("nan")),
        wall_s=wall,
        elapsed_s=elapsed_s,
        cpu_s=cpu_s,
    )
