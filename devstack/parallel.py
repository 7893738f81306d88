"""Starting several components at once, and giving up on all of them at the first failure."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

from devstack.errors import StartCancelled


def in_parallel(*tasks: Callable[[], None], cancel: threading.Event | None = None) -> None:
    """Run `tasks` in threads and wait for all of them, then raise the first failure if any.

    On the first failure, or when we are interrupted, `cancel` is set so that the other tasks
    stop waiting for readiness instead of running to their timeouts.
    """
    with ThreadPoolExecutor(max_workers=len(tasks), thread_name_prefix="devstack") as pool:
        futures = [pool.submit(task) for task in tasks]
        try:
            wait(futures, return_when=FIRST_EXCEPTION)
        finally:
            # Still running here means another task failed, or we were interrupted (Ctrl-C).
            if cancel is not None and not all(future.done() for future in futures):
                cancel.set()
        errors = [error for future in futures if (error := future.exception()) is not None]
    # The cause, not the tasks that gave up because of it.
    errors.sort(key=lambda error: isinstance(error, StartCancelled))
    if errors:
        raise errors[0]
