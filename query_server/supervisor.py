"""LEDGER_QUERY_WORKERS > 1: this process supervises that many `query_server.worker` processes
which serve the same port together (SO_REUSEPORT).

Why processes: gRPC's own per-call Python machinery runs under one interpreter lock, so a single
grpc.aio process tops out near one core whatever the machine has (docs/performance.md).

What it guarantees:

- the kernel spreads incoming connections (not calls: a client channel stays on the worker that
  accepted it) over the live workers; a dead worker's socket leaves the group, so new connections
  only reach live ones, and the worker is restarted with a back-off;
- a worker that keeps dying soon after starting (bad database URL, port taken by another
  program...) is not restarted for ever: the supervisor stops the others and exits 1
  (`ledger.supervision`, which also forwards SIGTERM/SIGINT and leaves no orphan);
- a worker finishes its calls in flight on SIGTERM (the grace period) as a single server does;
- the workers' metrics (prometheus_client's multiprocess mode, in a directory of our own) are
  exported summed on LEDGER_METRICS_ADDR by this process; the process_* metrics there are the
  supervisor's own.
"""

from __future__ import annotations

import logging
import os
import tempfile

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from ledger.supervision import Worker, supervise_workers
from ledger.telemetry.exporter import QUERY_SERVER_METRICS_ADDR, start_metrics_exporter
from query_server.settings import Settings

log = logging.getLogger("query_server.supervisor")

WORKER_MODULE = "query_server.worker"
# Beyond the workers' own grace period: interpreter shutdown, closing the pools.
_STOP_MARGIN_SECONDS = 10.0


async def supervise(settings: Settings, registry: CollectorRegistry = REGISTRY) -> int:
    """Run `settings.workers` workers until SIGTERM/SIGINT (0) or until one keeps failing (1)."""
    with tempfile.TemporaryDirectory(prefix="ledger-query-metrics-") as metrics_dir:
        collector = MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
        exporter = start_metrics_exporter(QUERY_SERVER_METRICS_ADDR, registry=registry)
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}

        def forget_metrics(pid: int) -> None:
            mark_process_dead(pid, metrics_dir)  # type: ignore[no-untyped-call]

        log.info("supervising %d workers on %s", settings.workers, settings.listen)
        exit_code = await supervise_workers(
            [Worker(index, ("-m", WORKER_MODULE), env) for index in range(settings.workers)],
            settings.grace_seconds + _STOP_MARGIN_SECONDS,
            on_exit=forget_metrics,
        )
        if exporter is not None:
            exporter.close()
        registry.unregister(collector)
    log.info("stopped")
    return exit_code
