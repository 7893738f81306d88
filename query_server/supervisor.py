"""LEDGER_QUERY_WORKERS > 1: this process supervises that many `query_server.worker` processes
which serve the same port together (SO_REUSEPORT).

Why processes: one grpc.aio server spends ~0.5 ms of CPU per call in gRPC's own Python machinery
under one interpreter lock, so a single process tops out near one core whatever the machine has.

What it guarantees:

- the kernel spreads incoming connections (not calls: a client channel stays on the worker that
  accepted it) over the live workers; a dead worker's socket leaves the group, so new connections
  only reach live ones, and the worker is restarted with a back-off;
- a worker that keeps dying soon after starting (bad database URL, port taken by another
  program...) is not restarted for ever: after `_MAX_QUICK_FAILURES` in a row the supervisor stops
  the others and exits 1, so that whatever runs the query server sees it fail;
- SIGTERM/SIGINT are forwarded to every worker, which finishes its calls in flight (the grace
  period) as a single server does; stragglers are killed after that;
- if the supervisor itself dies (SIGKILL), each worker notices the pipe on its stdin closing
  and stops on its own: no orphan keeps serving the port;
- the workers' metrics (prometheus_client's multiprocess mode, in a directory of our own) are
  exported summed on LEDGER_METRICS_ADDR by this process; the process_* metrics there are the
  supervisor's own.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
import tempfile
from collections.abc import Mapping

from prometheus_client import REGISTRY, CollectorRegistry
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

from ledger.telemetry.exporter import QUERY_SERVER_METRICS_ADDR, start_metrics_exporter
from query_server.settings import Settings

log = logging.getLogger("query_server.supervisor")

WORKER_MODULE = "query_server.worker"
# A worker that ran this long was healthy: its next failure starts the count afresh.
_STABLE_SECONDS = 30.0
_MAX_QUICK_FAILURES = 5
_FIRST_BACKOFF_SECONDS = 0.5
_MAX_BACKOFF_SECONDS = 10.0
# Beyond the workers' own grace period: interpreter shutdown, closing the pools.
_STOP_MARGIN_SECONDS = 10.0


async def supervise(settings: Settings, registry: CollectorRegistry = REGISTRY) -> int:
    """Run `settings.workers` workers until SIGTERM/SIGINT (0) or until one keeps failing (1)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    failed = asyncio.Event()
    with tempfile.TemporaryDirectory(prefix="ledger-query-metrics-") as metrics_dir:
        collector = MultiProcessCollector(registry, path=metrics_dir)  # type: ignore[no-untyped-call]
        exporter = start_metrics_exporter(QUERY_SERVER_METRICS_ADDR, registry=registry)
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        stop_timeout = settings.grace_seconds + _STOP_MARGIN_SECONDS
        workers = [
            loop.create_task(
                _keep_running(index, env, metrics_dir, stop_timeout, stopping, failed),
                name=f"query-worker-{index}",
            )
            for index in range(settings.workers)
        ]
        log.info("supervising %d workers on %s", settings.workers, settings.listen)
        either = [loop.create_task(stopping.wait()), loop.create_task(failed.wait())]
        await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
        for waiter in either:
            waiter.cancel()
        stopping.set()
        await asyncio.gather(*workers)
        if exporter is not None:
            exporter.close()
        registry.unregister(collector)
    log.info("stopped")
    return 1 if failed.is_set() else 0


async def _keep_running(
    index: int,
    env: Mapping[str, str],
    metrics_dir: str,
    stop_timeout: float,
    stopping: asyncio.Event,
    failed: asyncio.Event,
) -> None:
    """Run worker `index` until `stopping`, restarting it whenever it exits on its own."""
    loop = asyncio.get_running_loop()
    quick_failures = 0
    backoff = _FIRST_BACKOFF_SECONDS
    while not stopping.is_set():
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            WORKER_MODULE,
            # Never written to: its closing is how the worker learns that we are gone.
            stdin=asyncio.subprocess.PIPE,
            env=dict(env),
        )
        started = loop.time()
        log.info("worker %d started (pid %d)", index, process.pid)
        code = await _until_exit_or_stop(process, stopping, stop_timeout)
        mark_process_dead(process.pid, metrics_dir)  # type: ignore[no-untyped-call]
        if stopping.is_set():
            log.info("worker %d (pid %d) stopped with %s", index, process.pid, code)
            return
        ran = loop.time() - started
        if ran >= _STABLE_SECONDS:
            quick_failures, backoff = 0, _FIRST_BACKOFF_SECONDS
        quick_failures += 1
        if quick_failures >= _MAX_QUICK_FAILURES:
            log.critical(
                "worker %d exited %d times in a row within %.0fs of starting (last: %s); "
                "stopping all workers",
                index,
                quick_failures,
                _STABLE_SECONDS,
                _describe(code),
            )
            failed.set()
            return
        log.error(
            "worker %d (pid %d) exited (%s) after %.1fs; restarting it in %.1fs",
            index,
            process.pid,
            _describe(code),
            ran,
            backoff,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), backoff)
        backoff = min(backoff * 2, _MAX_BACKOFF_SECONDS)


async def _until_exit_or_stop(
    process: asyncio.subprocess.Process, stopping: asyncio.Event, stop_timeout: float
) -> int:
    """The worker's exit code; on `stopping`, after asking it to stop (killing it if it is slow)."""
    exited = asyncio.ensure_future(process.wait())
    stop = asyncio.ensure_future(stopping.wait())
    try:
        await asyncio.wait((exited, stop), return_when=asyncio.FIRST_COMPLETED)
    finally:
        stop.cancel()
    if not exited.done():
        with contextlib.suppress(ProcessLookupError):
            process.send_signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(asyncio.shield(exited), stop_timeout)
        except TimeoutError:
            log.warning(
                "worker pid %d did not stop within %.0fs; killing it", process.pid, stop_timeout
            )
            with contextlib.suppress(ProcessLookupError):
                process.kill()
    code = await exited
    if process.stdin is not None:
        process.stdin.close()
    return code


def _describe(code: int) -> str:
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"killed by {signal.Signals(-code).name}"
    return f"exit code {code}"
