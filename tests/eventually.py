"""Waiting for something that happens soon, for tests of every kind.

A condition is called until it returns a truthy value, which `eventually` returns. While not yet
true it returns a falsy value or raises AssertionError; after `timeout` seconds the test fails
with the message and the last AssertionError, so that the failure says what was awaited.
No assertion depends on a sleep being long enough: only on the condition becoming true in time.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import TypeVar

T = TypeVar("T")

Message = str | Callable[[], str] | None


def eventually(
    condition: Callable[[], T],
    *,
    timeout: float = 10.0,
    interval: float = 0.05,
    message: Message = None,
) -> T:
    """The first truthy value of `condition()`, polled every `interval` s for `timeout` s."""
    wait = _Wait(timeout, message)
    while True:
        with wait:
            return _true(condition())
        time.sleep(interval)


async def eventually_async(
    condition: Callable[[], Awaitable[T]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - the same signature as the sync twin
    interval: float = 0.05,
    message: Message = None,
) -> T:
    """`eventually` for a coroutine condition; the event loop runs while it waits."""
    wait = _Wait(timeout, message)
    while True:
        with wait:
            return _true(await condition())
        await asyncio.sleep(interval)


class _NotYet(Exception):
    """A condition's falsy answer, raised so that it ends an attempt as an AssertionError does."""

    def __init__(self, value: object) -> None:
        super().__init__(value)
        self.value = value


def _true(value: T) -> T:
    if not value:
        raise _NotYet(value)
    return value


class _Wait:
    """One wait: each attempt runs in `with wait:`, which swallows a not-yet answer (a falsy value
    or an AssertionError) until the deadline, then fails the test with the last one."""

    def __init__(self, timeout: float, message: Message) -> None:
        self.timeout = timeout
        self.message = message
        self.deadline = time.monotonic() + timeout

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind: object, error: BaseException | None, traceback: object) -> bool:
        if not isinstance(error, _NotYet | AssertionError):
            return False
        if time.monotonic() < self.deadline:
            return True
        awaited = self.message() if callable(self.message) else self.message
        parts = [f"not true after {self.timeout:g} s"]
        if awaited:
            parts.append(f"waiting for {awaited}")
        if isinstance(error, _NotYet):
            parts.append(f"last value: {error.value!r}")
            raise AssertionError("; ".join(parts)) from None
        parts.append(f"last: {error}")
        raise AssertionError("; ".join(parts)) from error
