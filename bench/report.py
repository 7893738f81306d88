"""Results: rows of medians, goals checked against them, a printed table and JSON files."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path

RESULTS_DIR = Path(__file__).resolve().parent / "results"


@dataclass
class Row:
    """One measured configuration: medians over its runs, and every run's figures."""

    scenario: str
    target: str
    load: str
    metrics: dict[str, float]
    runs: list[dict[str, float]] = field(default_factory=list)


@dataclass
class Goal:
    """A goal of the issue, checked against this run's figures."""

    name: str
    measured: float
    limit: float
    at_least: bool
    unit: str = ""

    @property
    def met(self) -> bool:
        if math.isnan(self.measured):
            return False
        return self.measured >= self.limit if self.at_least else self.measured <= self.limit

    def describe(self) -> str:
        sign = ">=" if self.at_least else "<="
        verdict = "met" if self.met else "MISSED"
        goal = f"goal {sign} {self.limit:,g}{self.unit}"
        return f"{self.name}: {self.measured:,.2f}{self.unit} ({goal}) {verdict}"


@dataclass
class Pending:
    """A scenario that cannot run yet, and why."""

    scenario: str
    reason: str


@dataclass
class Report:
    mode: str
    machine: dict[str, object]
    started_at: str
    rows: list[Row] = field(default_factory=list)
    goals: list[Goal] = field(default_factory=list)
    pending: list[Pending] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    settings: dict[str, object] = field(default_factory=dict)

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["goals"] = [{**asdict(goal), "met": goal.met} for goal in self.goals]
        return data


def median_of(runs: Sequence[dict[str, float]]) -> dict[str, float]:
    """The median of every metric over the runs."""
    keys = runs[0].keys() if runs else ()
    return {key: statistics.median(run[key] for run in runs) for key in keys}


_COLUMNS = (
    ("scenario", "scenario"),
    ("target", "target"),
    ("load", "load"),
    ("commands_per_s", "cmd/s"),
    ("queries_per_s", "queries/s"),
    ("reads_per_s", "reads/s"),
    ("accounts_per_s", "accounts/s"),
    ("p50_ms", "p50 ms"),
    ("p99_ms", "p99 ms"),
    ("pending", "PENDING"),
    ("ratio", "vs noop"),
    ("vs_plaintext", "vs plaintext"),
    ("vs_peer", "vs peer"),
    ("vs_raw", "vs raw"),
    ("visible_p50_ms", "visible p50 ms"),
    ("visible_p99_ms", "visible p99 ms"),
    ("lag_slope", "lag slope ev/s"),
    ("lag_max", "lag max ev"),
    ("server_cores", "server cores"),
    ("loadgen_cores", "ghz cores"),
    ("client_cores", "client cores"),
    ("server_cpu_ms", "server CPU ms/cmd"),
    ("query_cpu_ms", "server CPU ms/query"),
    ("kafka_cpu_ms", "Kafka CPU ms/cmd"),
    ("postgres_cpu_ms", "PG CPU ms/query"),
    ("loadgen_cpu_ms", "ghz CPU ms/cmd"),
    ("server_cpu_us", "server CPU µs/cmd"),
    ("kafka_cpu_us", "Kafka CPU µs/cmd"),
    ("postgres_cpu_us", "PG CPU µs/cmd"),
    ("client_cpu_us", "client CPU µs/cmd"),
    ("loadgen_query_cpu_ms", "ghz CPU ms/query"),
    ("seconds_to_serving", "to SERVING s"),
    ("replay_s", "replay s"),
    ("first_batch_s", "first batch s"),
    ("elapsed_s", "elapsed s"),
    ("events_per_s", "events/s"),
    ("vs_copy", "vs COPY"),
    ("process_cpu_s", "process CPU s"),
    ("postgres_cpu_s", "PG CPU s"),
    ("process_cpu_us_per_event", "process CPU µs/event"),
    ("postgres_cpu_us_per_event", "PG CPU µs/event"),
)


def _cell(row: Row, key: str) -> str:
    if key in ("scenario", "target", "load"):
        return str(getattr(row, key))
    value = row.metrics.get(key)
    if value is None:
        return ""
    if math.isnan(value):
        return "n/a"
    if key.endswith("_cores"):
        return f"{value:.2f}"
    if key in ("ratio", "vs_copy", "vs_plaintext", "vs_peer", "vs_raw"):
        return f"{value:.2f}x"
    if key.endswith("_per_s"):
        return f"{value:,.0f}"
    return f"{value:,.2f}"


def _table(rows: Sequence[Row]) -> list[str]:
    columns = [(key, title) for key, title in _COLUMNS if any(_cell(r, key) for r in rows)]
    table = [[title for _, title in columns]]
    table += [[_cell(row, key) for key, _ in columns] for row in rows]
    widths = [max(len(line[i]) for line in table) for i in range(len(columns))]
    lines = []
    for number, line in enumerate(table):
        lines.append(
            "| "
            + " | ".join(cell.ljust(width) for cell, width in zip(line, widths, strict=True))
            + " |"
        )
        if number == 0:
            lines.append("| " + " | ".join("-" * width for width in widths) + " |")
    return lines


def render(report: Report) -> str:
    # One table per scenario, each with only its own columns: a single table with every
    # scenario's columns would be mostly empty and too wide to read.
    scenarios = list(dict.fromkeys(row.scenario for row in report.rows))
    lines: list[str] = []
    for scenario in scenarios:
        lines += [*_table([row for row in report.rows if row.scenario == scenario]), ""]
    out = [
        f"Ledger benchmarks ({report.mode}), {report.started_at}",
        f"machine: {report.machine}",
        "",
        *lines,
        "goals:",
        *(f"  {goal.describe()}" for goal in report.goals),
    ]
    if report.notes:
        out += ["", "notes:", *(f"  {note}" for note in report.notes)]
    if report.pending:
        out += ["", "not measured yet:", *(f"  {p.scenario}: {p.reason}" for p in report.pending)]
    return "\n".join(out)


def write(report: Report, directory: Path = RESULTS_DIR) -> Path:
    """Write `<timestamp>.json` and `latest.json`; return the timestamped path."""
    directory.mkdir(parents=True, exist_ok=True)
    text = json.dumps(report.to_json(), indent=2, sort_keys=False) + "\n"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    path = directory / f"{stamp}.json"
    path.write_text(text)
    (directory / "latest.json").write_text(text)
    return path
