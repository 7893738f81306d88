"""Interleaved comparisons: the same load against two servers (a Ledger server and the no-op
server; the same Ledger server's code with TLS and tokens and in plaintext), run by run in turn
so that the noise of a shared machine falls on both alike, and the ratios of adjacent runs."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import NamedTuple

from bench.ghz import GhzTls, Load


@dataclass(frozen=True)
class ComparisonPlan:
    clients: tuple[int, ...]
    """The client counts compared, each after a warm-up of both servers."""
    runs: int
    """Runs of each server per client count."""
    seconds: float
    warmup_s: float


class Target(NamedTuple):
    """A server under load: its name in the runs ("ledger", "noop", "tls", "plaintext"), where it
    listens, the process to meter, and how ghz reaches it (None: plaintext, no token)."""

    name: str
    address: str
    pid: int
    tls: GhzTls | None = None


Runs = dict[str, list[dict[str, float]]]
"""The figures of every run, by target name."""


Measure = Callable[[Target, Load], dict[str, float]]
"""One run of a load against a target, and its figures."""


def interleaved(targets: Sequence[Target], runs: int, load: Load, measure: Measure) -> Runs:
    """`runs` rounds, each running `load` against every target in turn."""
    results: Runs = {target.name: [] for target in targets}
    for _ in range(runs):
        for target in targets:
            results[target.name].append(measure(target, load))
    return results


def warmed_runs(
    targets: Sequence[Target],
    plan: ComparisonPlan,
    load: Callable[[int, float], Load],
    clients: int,
    measure: Measure,
) -> Runs:
    """A warm-up of every target with `load(clients, plan.warmup_s)`, then `plan.runs`
    interleaved rounds of `load(clients, plan.seconds)`."""
    for target in targets:
        measure(target, load(clients, plan.warmup_s))
    return interleaved(targets, plan.runs, load(clients, plan.seconds), measure)


def paired_median(
    runs: Runs,
    name: str,
    ratio: Callable[[dict[str, float], dict[str, float]], float],
    of: str = "ledger",
    to: str = "noop",
) -> float:
    """Set `name` on every run of `of` to its `ratio` to the run of `to` right after it; return
    the median. The median of paired ratios shrugs off a noisy minute better than a ratio of
    medians would."""
    paired = list(zip(runs[of], runs[to], strict=True))
    for run, other in paired:
        run[name] = ratio(run, other)
    return statistics.median(run[name] for run, _ in paired)
