"""The comparison with the no-op server: the same load against a Ledger server and the no-op
server, interleaved run by run so that the noise of a shared machine falls on both alike, and
the ratios of adjacent runs."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from bench.ghz import Load


@dataclass(frozen=True)
class ComparisonPlan:
    clients: tuple[int, ...]
    """The client counts compared, each after a warm-up of both servers."""
    runs: int
    """Runs of each server per client count."""
    seconds: float
    warmup_s: float


Target = tuple[str, str, int]
"""(name, address, pid): "ledger" or "noop", where it listens, the process to meter."""
Runs = dict[str, list[dict[str, float]]]
"""The figures of every run, by target name."""


Measure = Callable[[str, int, Load], dict[str, float]]
"""One run of a load against (address, pid), and its figures."""


def interleaved(targets: Sequence[Target], runs: int, load: Load, measure: Measure) -> Runs:
    """`runs` rounds, each running `load` against every target in turn."""
    results: Runs = {name: [] for name, _, _ in targets}
    for _ in range(runs):
        for name, address, pid in targets:
            results[name].append(measure(address, pid, load))
    return results


def paired_median(
    runs: Runs, name: str, ratio: Callable[[dict[str, float], dict[str, float]], float]
) -> float:
    """Set `name` on every ledger run to its `ratio` to the no-op run right after it; return the
    median. The median of paired ratios shrugs off a noisy minute better than a ratio of
    medians would."""
    paired = list(zip(runs["ledger"], runs["noop"], strict=True))
    for ledger_run, noop_run in paired:
        ledger_run[name] = ratio(ledger_run, noop_run)
    return statistics.median(run[name] for run, _ in paired)
