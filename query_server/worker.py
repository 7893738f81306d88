"""`python -m query_server.worker`: one of the processes a supervisor runs on a shared port.

Started by `query_server.supervisor` only, with the supervisor's environment plus
PROMETHEUS_MULTIPROC_DIR (its metrics go to files there, and the supervisor exports the sum) and
a pipe on stdin that stays open for as long as the supervisor lives. Otherwise it is the
single-process server: its own asyncpg pool, its own LISTEN connection, health and reflection.
"""

from __future__ import annotations

import asyncio
import logging
import sys

from ledger.environment import SettingsError
from ledger.telemetry.logs import configure_logging
from query_server.app import serve
from query_server.settings import Settings

log = logging.getLogger("query_server")


def main() -> None:
    configure_logging("query-server")
    try:
        settings = Settings.from_env()
    except SettingsError as exc:
        log.critical("cannot start: %s", exc)
        sys.exit(2)
    sys.exit(asyncio.run(serve(settings, export_metrics=False, parent_pipe=sys.stdin.fileno())))


if __name__ == "__main__":
    main()
