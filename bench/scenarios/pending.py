"""Scenarios 2-4 of issue 8, which need the projector and the query server.

Each is listed in every report as not measured yet, with what it will measure, so that the table
says what is missing rather than silently leaving it out. To add one: write a module beside this
one with `run(bench, report)` (see commands.py and restart.py), call it from bench/__main__.py
and remove its entry here. The harness already has what they need: `bench.stack` (PostgreSQL's
`database_url`), `LedgerService.projector(...)` / `LedgerService.query_server(...)` in devstack,
`bench.loader` to fill a topic with a million valid events, and `bench.ghz` for gRPC load.
"""

from __future__ import annotations

from bench.report import Pending, Report

PENDING = (
    Pending(
        "projector catch-up",
        "1M events (bench.loader) into PostgreSQL: events/s vs a raw COPY of the same rows; "
        "needs the projector",
    ),
    Pending(
        "visibility lag",
        "at a steady 1,000 commands/s (ghz --rps), time from a command's ack until a query with "
        "its consistency token answers; needs the projector and the query server",
    ),
    Pending(
        "queries",
        "GetAccount queries/s and p99 (ghz) beside a no-op query server; needs the query server",
    ),
)


def run(report: Report) -> None:
    report.pending.extend(PENDING)
