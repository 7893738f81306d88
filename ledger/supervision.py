"""Worker processes kept running by a supervisor process: what `LEDGER_QUERY_WORKERS` and
`LEDGER_PROJECTOR_WORKERS` share.

What it guarantees:

- a worker that exits on its own is restarted after a jittered back-off (0.5 s to 10 s, so that
  workers failing together do not restart in lock-step), unless its exit code is one the
  service calls final (the projector's "an event contradicts the read model": restarting would
  meet the same event), or one it calls final at a worker's first start only ("cannot start":
  the same settings would fail again, while on a restart it may be a passing outage); a final
  code ends every worker, and is the supervisor's exit code, even when it comes while stopping;
- a worker that keeps dying soon after starting is not restarted for ever: after
  `MAX_QUICK_FAILURES` in a row the supervisor stops the others and fails, so that whatever runs
  the service sees it fail;
- on `stopping` (the supervisor's SIGTERM/SIGINT) every worker gets SIGTERM and finishes what it
  is doing; stragglers are killed after `stop_timeout`; a worker that fails as it stops (a
  positive exit code) makes the supervisor fail with its code, as a single process would;
- each worker gets a pipe on its stdin that the supervisor never writes to: if the supervisor
  dies (SIGKILL), the pipe closes and the worker stops on its own (`watch_parent_pipe`), so no
  orphan keeps running.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import sys
from collections.abc import Callable, Collection, Mapping, Sequence
from dataclasses import dataclass, field

from ledger.backoff import Backoff

log = logging.getLogger("ledger.supervision")

# A worker that ran this long was healthy: its next failure starts the count afresh.
STABLE_SECONDS = 30.0
MAX_QUICK_FAILURES = 5
_FIRST_BACKOFF_SECONDS = 0.5
_MAX_BACKOFF_SECONDS = 10.0


@dataclass(frozen=True, slots=True)
class Worker:
    index: int
    args: Sequence[str]
    """Arguments to the Python interpreter, e.g. ("-m", "projector.worker")."""
    env: Mapping[str, str]


@dataclass(frozen=True, slots=True)
class ExitCodes:
    """The worker exit codes that are not restarted but end every worker (see the module)."""

    final: Collection[int] = ()
    final_at_first_start: Collection[int] = ()


@dataclass(slots=True)
class Ending:
    """Why the supervisor is ending its workers: the first worker to fail sets it; a final exit
    code outranks a worker that kept failing (1)."""

    failed: asyncio.Event = field(default_factory=asyncio.Event)
    exit_code: int = 0

    def end(self, exit_code: int) -> None:
        if not self.failed.is_set() or (self.exit_code == 1 and exit_code != 1):
            self.exit_code = exit_code
        self.failed.set()


async def supervise_workers(
    workers: Sequence[Worker],
    stop_timeout: float,
    exit_codes: ExitCodes = ExitCodes(),
    on_exit: Callable[[int], None] | None = None,
) -> int:
    """Keep `workers` running until SIGTERM/SIGINT (0, unless one fails as it stops), a final
    exit code (that code) or one that keeps failing (1); returns once every worker has ended."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    signals = (signal.SIGTERM, signal.SIGINT)
    for signum in signals:
        loop.add_signal_handler(signum, stopping.set)
    try:
        return await _supervise(workers, stop_timeout, exit_codes, on_exit, stopping)
    finally:
        for signum in signals:
            loop.remove_signal_handler(signum)


async def _supervise(
    workers: Sequence[Worker],
    stop_timeout: float,
    exit_codes: ExitCodes,
    on_exit: Callable[[int], None] | None,
    stopping: asyncio.Event,
) -> int:
    loop = asyncio.get_running_loop()
    ending = Ending()
    tasks = [
        loop.create_task(
            keep_running(worker, stop_timeout, stopping, ending, exit_codes, on_exit),
            name=f"worker-{worker.index}",
        )
        for worker in workers
    ]
    either = [loop.create_task(stopping.wait()), loop.create_task(ending.failed.wait())]
    await asyncio.wait(either, return_when=asyncio.FIRST_COMPLETED)
    for waiter in either:
        waiter.cancel()
    stopping.set()
    await asyncio.gather(*tasks)
    return ending.exit_code


async def keep_running(
    worker: Worker,
    stop_timeout: float,
    stopping: asyncio.Event,
    ending: Ending,
    exit_codes: ExitCodes = ExitCodes(),
    on_exit: Callable[[int], None] | None = None,
) -> None:
    """Run `worker` until `stopping` or `ending`, restarting it whenever it exits on its own,
    unless with a final exit code or too often: then `ending` says so and this returns.
    `on_exit` gets the pid of each process that ended."""
    loop = asyncio.get_running_loop()
    quick_failures = 0
    # Every wait lies within the documented bounds, 0.5 s to 10 s; the first is drawn up to
    # twice the floor, so that even the first restarts of workers failing together spread out.
    backoff = Backoff(
        min(2 * _FIRST_BACKOFF_SECONDS, _MAX_BACKOFF_SECONDS),
        _MAX_BACKOFF_SECONDS,
        floor=_FIRST_BACKOFF_SECONDS,
    )
    index = worker.index
    first_start = True
    while not stopping.is_set() and not ending.failed.is_set():
        process = await asyncio.create_subprocess_exec(
            sys.executable,
            *worker.args,
            # Never written to: its closing is how the worker learns that we are gone.
            stdin=asyncio.subprocess.PIPE,
            env=dict(worker.env),
        )
        started = loop.time()
        log.info("worker %d started (pid %d)", index, process.pid)
        code = await _until_exit_or_stop(process, stopping, stop_timeout)
        if on_exit is not None:
            on_exit(process.pid)
        final = code in exit_codes.final or (
            first_start and code in exit_codes.final_at_first_start
        )
        first_start = False
        if final:
            log.critical("worker %d exited with %s; stopping all workers", index, _describe(code))
            ending.end(code)
            return
        if stopping.is_set() or ending.failed.is_set():
            log.info("worker %d (pid %d) stopped with %s", index, process.pid, _describe(code))
            if code > 0:
                ending.end(code)
            return
        ran = loop.time() - started
        if ran >= STABLE_SECONDS:
            quick_failures = 0
            backoff.reset()
        quick_failures += 1
        if quick_failures >= MAX_QUICK_FAILURES:
            log.critical(
                "worker %d exited %d times in a row within %.0fs of starting (last: %s); "
                "stopping all workers",
                index,
                quick_failures,
                STABLE_SECONDS,
                _describe(code),
            )
            ending.end(1)
            return
        wait = backoff.next()
        log.error(
            "worker %d (pid %d) exited (%s) after %.1fs; restarting it in %.1fs",
            index,
            process.pid,
            _describe(code),
            ran,
            wait,
        )
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stopping.wait(), wait)


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


def watch_parent_pipe(fd: int, stop: Callable[[], None]) -> None:
    """In a worker: call `stop` once `fd` (its stdin, the supervisor's pipe) reads end-of-file,
    that is once the supervisor is gone."""
    loop = asyncio.get_running_loop()

    def readable() -> None:
        try:
            data = os.read(fd, 64)
        except OSError:
            data = b""
        if not data:
            loop.remove_reader(fd)
            log.warning("the supervisor is gone; stopping")
            stop()

    loop.add_reader(fd, readable)
