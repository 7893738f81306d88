"""`python -m query_server.worker`: one of the processes a supervisor runs on a shared port.

Started by `query_server.supervisor` only, with the supervisor's environment plus
PROMETHEUS_MULTIPROC_DIR (its metrics go to files there, and the supervisor exports the sum) and
a pipe on stdin that stays open for as long as the supervisor lives. Otherwise it is the
single-process server: its own asyncpg pool, its own LISTEN connection, health and reflection.
"""

from __future__ import annotations

import asyncio
import sys

from query_server.app import serve, settings_or_exit


def main() -> None:
    # The supervisor's environment, so the same TLS and token settings as a lone server.
    settings, security = settings_or_exit()
    sys.exit(
        asyncio.run(serve(settings, security, export_metrics=False, parent_pipe=sys.stdin.fileno()))
    )


if __name__ == "__main__":
    main()
