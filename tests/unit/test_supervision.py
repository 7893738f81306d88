"""ledger.supervision with real (tiny) worker processes: restarts, final exit codes, stopping."""

from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path

import pytest

from ledger import supervision
from ledger.supervision import (
    Ending,
    ExitCodes,
    Worker,
    keep_running,
    supervise_workers,
    watch_parent_pipe,
)
from tests.eventually import eventually_async

# Each start of a worker appends an "x" to the file named by its first argument, then `then`
# runs with `n`, the number of starts so far.
_COUNTING = (
    "import pathlib, signal, sys, time\np = pathlib.Path(sys.argv[1])\nn = len(p.read_text()) + 1\n"
)
_COUNT = "p.write_text('x' * n)\n"
PROJECTOR_LIKE = ExitCodes(final=(3,), final_at_first_start=(2,))


def _worker(starts: Path, then: str) -> Worker:
    starts.write_text("")
    return Worker(0, ("-c", f"{_COUNTING}{then}", str(starts)), dict(os.environ))


def _starts(starts: Path) -> int:
    return len(starts.read_text())


async def _started(starts: Path) -> None:
    async def once() -> bool:
        return _starts(starts) == 1

    await eventually_async(once, interval=0.01, message="the worker to start")


@pytest.fixture(autouse=True)
def short_backoff(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(supervision, "_FIRST_BACKOFF_SECONDS", 0.01)
    monkeypatch.setattr(supervision, "_MAX_BACKOFF_SECONDS", 0.01)


async def _run_alone(worker: Worker, exit_codes: ExitCodes = PROJECTOR_LIKE) -> Ending:
    ending = Ending()
    await asyncio.wait_for(keep_running(worker, 5, asyncio.Event(), ending, exit_codes), 60)
    return ending


async def test_a_final_exit_code_ends_every_worker_with_that_code(tmp_path: Path) -> None:
    starts = tmp_path / "starts"

    ending = await _run_alone(_worker(starts, f"{_COUNT}sys.exit(3)"))

    assert ending.failed.is_set()
    assert ending.exit_code == 3
    assert _starts(starts) == 1, "a final exit is not restarted"


async def test_cannot_start_is_final_at_the_first_start_only(tmp_path: Path) -> None:
    first = tmp_path / "first"
    assert (await _run_alone(_worker(first, f"{_COUNT}sys.exit(2)"))).exit_code == 2
    assert _starts(first) == 1

    # Exits 1, then 2 at every restart: a passing outage, retried until it counts as failing.
    later = tmp_path / "later"
    ending = await _run_alone(_worker(later, f"{_COUNT}sys.exit(1 if n == 1 else 2)"))
    assert ending.exit_code == 1
    assert _starts(later) == supervision.MAX_QUICK_FAILURES


async def test_a_worker_that_keeps_failing_is_restarted_then_given_up_on(tmp_path: Path) -> None:
    starts = tmp_path / "starts"
    ended: list[int] = []
    ending = Ending()

    await asyncio.wait_for(
        keep_running(
            _worker(starts, f"{_COUNT}sys.exit(1)"),
            5,
            asyncio.Event(),
            ending,
            PROJECTOR_LIKE,
            on_exit=ended.append,
        ),
        60,
    )

    assert ending.exit_code == 1
    assert _starts(starts) == supervision.MAX_QUICK_FAILURES
    assert len(set(ended)) == supervision.MAX_QUICK_FAILURES, "each start is a new process"


@pytest.mark.parametrize("obeys_sigterm", [True, False])
async def test_stopping_asks_the_worker_to_stop_and_kills_it_if_it_does_not(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, obeys_sigterm: bool
) -> None:
    starts = tmp_path / "starts"
    ignore = "" if obeys_sigterm else "signal.signal(signal.SIGTERM, signal.SIG_IGN)\n"
    # Counted once its handlers are set, so that SIGTERM cannot come before them.
    worker = _worker(starts, f"{ignore}{_COUNT}time.sleep(60)")
    stop_timeout = 2.0
    stopping = asyncio.Event()
    ending = Ending()
    running = asyncio.create_task(keep_running(worker, stop_timeout, stopping, ending))
    await _started(starts)

    began = time.monotonic()
    with caplog.at_level(logging.WARNING, logger="ledger.supervision"):
        stopping.set()
        await asyncio.wait_for(running, 30)
    took = time.monotonic() - began

    killed = "did not stop within" in caplog.text
    assert killed is not obeys_sigterm
    assert took < stop_timeout if obeys_sigterm else took >= stop_timeout
    assert not ending.failed.is_set()
    assert _starts(starts) == 1, "a stopped worker is not restarted"


# A projector whose last batch meets a contradiction as it is told to stop exits 3; one whose
# consumer fails then exits 1. Either is what a single process would have reported.
@pytest.mark.parametrize("code", [3, 1])
async def test_the_exit_code_a_worker_stops_with_is_the_supervisors(
    tmp_path: Path, code: int
) -> None:
    starts = tmp_path / "starts"
    then = f"signal.signal(signal.SIGTERM, lambda *_: sys.exit({code}))\n{_COUNT}time.sleep(60)"
    stopping = asyncio.Event()
    ending = Ending()
    running = asyncio.create_task(
        keep_running(_worker(starts, then), 10, stopping, ending, PROJECTOR_LIKE)
    )
    await _started(starts)

    stopping.set()
    await asyncio.wait_for(running, 30)

    assert ending.exit_code == code


async def test_one_workers_final_exit_code_stops_the_others_and_is_the_exit_code(
    tmp_path: Path,
) -> None:
    failing, other = tmp_path / "failing", tmp_path / "other"
    stopped = tmp_path / "stopped"
    # The other worker notes that it was asked to stop, then stops as asked.
    obeying = (
        "def stop(*_):\n"
        f"    pathlib.Path({str(stopped)!r}).write_text('asked')\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        f"{_COUNT}time.sleep(60)"
    )
    waits_for_other = f"while not pathlib.Path({str(other)!r}).read_text():\n    time.sleep(0.01)\n"
    workers = [
        # Fails once the other has set its handler, so that the SIGTERM finds it set.
        Worker(0, _worker(failing, f"{waits_for_other}sys.exit(3)").args, dict(os.environ)),
        Worker(1, _worker(other, obeying).args, dict(os.environ)),
    ]

    exit_code = await asyncio.wait_for(supervise_workers(workers, 10, PROJECTOR_LIKE), 60)

    assert exit_code == 3
    assert stopped.read_text() == "asked"
    assert _starts(other) == 1, "the other worker is not restarted"


def test_a_final_exit_code_outranks_a_worker_that_kept_failing() -> None:
    for codes, expected in (((1, 3), 3), ((3, 1), 3), ((3, 2), 3), ((1, 1), 1)):
        ending = Ending()
        for code in codes:
            ending.end(code)
        assert (ending.failed.is_set(), ending.exit_code) == (True, expected), codes


async def test_a_worker_stops_once_the_supervisors_pipe_closes() -> None:
    read_end, write_end = os.pipe()
    stopped = asyncio.Event()
    try:
        watch_parent_pipe(read_end, stopped.set)
        await asyncio.sleep(0.05)
        assert not stopped.is_set()

        os.close(write_end)
        await asyncio.wait_for(stopped.wait(), 5)
    finally:
        os.close(read_end)
