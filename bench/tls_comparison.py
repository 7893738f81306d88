"""TLS and tokens against plaintext, the goal of issue 19: at 64 clients, the same load against a
Ledger server that serves TLS and verifies a bearer token on every call and against a server of
the same code in plaintext without tokens, interleaved run by run as in the no-op comparison.
The ratio is the median over adjacent pairs of runs of the TLS server's rate over the plaintext
server's; the goal is that it keeps at least 0.85 of it."""

from __future__ import annotations

from collections.abc import Callable

from bench.ghz import Load
from bench.noop_comparison import ComparisonPlan, Measure, Target, paired_median, warmed_runs
from bench.report import Goal, Report, Row, median_of

CLIENTS = 64
GOAL_RATIO = 0.85


def compare_tls(
    report: Report,
    scenario: str,
    what: str,
    targets: tuple[Target, Target],
    plan: ComparisonPlan,
    load: Callable[[int, float], Load],
    measure: Measure,
    figures: tuple[str, str],
) -> Goal:
    """Rows `scenario`/"tls" and "plaintext" at `CLIENTS` clients and a note on the server CPU
    per call; returns the goal on `what` (the RPC), for the scenario to list with its own.
    `targets` are (TLS, plaintext), named "tls" and "plaintext"; `load(clients, seconds)` is the
    scenario's load; `figures` names the rate and the server's CPU per call among the figures
    `measure` returns."""
    rate, server_cpu = figures
    runs = warmed_runs(targets, plan, load, CLIENTS, measure)
    tls = median_of(runs["tls"])
    plaintext = median_of(runs["plaintext"])
    tls["vs_plaintext"] = paired_median(
        runs, "vs_plaintext", lambda tls, plain: tls[rate] / plain[rate], "tls", "plaintext"
    )
    tls["cpu_vs_plaintext"] = paired_median(
        runs,
        "cpu_vs_plaintext",
        lambda tls, plain: tls[server_cpu] / plain[server_cpu],
        "tls",
        "plaintext",
    )
    load_text = f"{CLIENTS} clients"
    report.rows.append(Row(scenario, "tls", load_text, tls, runs["tls"]))
    report.rows.append(Row(scenario, "plaintext", load_text, plaintext, runs["plaintext"]))
    report.notes.append(
        f"{what}: the server's CPU per call with TLS and tokens is {tls['cpu_vs_plaintext']:.2f}x "
        f"its CPU per call in plaintext ({load_text})"
    )
    print(
        f"  {CLIENTS} clients: TLS and tokens {tls[rate]:,.0f}/s p99 {tls['p99_ms']:.1f} ms, "
        f"plaintext {plaintext[rate]:,.0f}/s: {tls['vs_plaintext']:.2f}x",
        flush=True,
    )
    return Goal(
        f"{what} with TLS and tokens vs plaintext ({load_text})",
        tls["vs_plaintext"],
        GOAL_RATIO,
        True,
        "x",
    )
