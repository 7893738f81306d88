"""LEDGER_PROJECTOR_WORKERS > 1: this process runs that many projectors (`projector.worker`) in
one consumer group, and Kafka splits the topic's partitions between them.

Why processes: a projector decodes and projects under one interpreter lock, which bounds its
catch-up near one core whatever the machine has; several share the partitions exactly as
separately started instances do (README, "Operating the read model"), so nothing is applied
twice across a rebalance.

Worker i serves its status on LEDGER_PROJECTOR_HTTP's port + i. A worker that finds an event
contradicting the read model (3), or cannot start at its first start (2), ends them all, and the
supervisor exits with that code: a restart would only meet the same event or the same settings.
Other exits (and 2 on a restart: a registry or Kafka outage may pass) restart the worker with a
back-off (`ledger.supervision`).
"""

from __future__ import annotations

import logging
import os

from ledger.supervision import ExitCodes, Worker, supervise_workers
from projector.exit_codes import EXIT_CANNOT_START, EXIT_CONTRADICTION
from projector.settings import HostPort, Settings

log = logging.getLogger("projector.supervisor")

WORKER_MODULE = "projector.worker"
# A worker finishes its batch in flight on SIGTERM; retries against an unreachable database end
# at once then (projector/retrying.py).
_STOP_TIMEOUT_SECONDS = 30.0


async def supervise(settings: Settings) -> int:
    """Run `settings.workers` projectors until SIGTERM/SIGINT (0), until one meets a
    contradiction (3) or cannot start at its first start (2), or until one keeps failing (1)."""
    log.info(
        "supervising %d projectors in consumer group %s; worker i serves its status on "
        "http://%s:%d+i/status",
        settings.workers,
        settings.group_id,
        settings.http.host,
        settings.http.port,
    )
    exit_code = await supervise_workers(
        [
            Worker(index, ("-m", WORKER_MODULE), _worker_env(settings, index))
            for index in range(settings.workers)
        ],
        _STOP_TIMEOUT_SECONDS,
        ExitCodes(final=(EXIT_CONTRADICTION,), final_at_first_start=(EXIT_CANNOT_START,)),
    )
    log.info("stopped")
    return exit_code


def _worker_env(settings: Settings, index: int) -> dict[str, str]:
    # Each worker checks its own settings: with our count, worker i would check that its port
    # + count - 1 exists too, and could refuse to start where the supervisor started fine.
    http = HostPort(settings.http.host, settings.http.port + index)
    return {**os.environ, "LEDGER_PROJECTOR_HTTP": str(http), "LEDGER_PROJECTOR_WORKERS": "1"}
