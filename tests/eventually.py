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
from typing import NoReturn, TypeVar

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
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = _judged(condition())
        except AssertionError as error:
            last = _NotYet(error, None)
        if not isinstance(last, _NotYet):
            return last
        if time.monotonic() >= deadline:
            _fail(last, timeout, message)
        time.sleep(interval)


async def eventually_async(
    condition: Callable[[], Awaitable[T]],
    *,
    timeout: float = 10.0,  # noqa: ASYNC109 - the same signature as the sync twin
    interval: float = 0.05,
    message: Message = None,
) -> T:
    """`eventually` for a coroutine condition; the event loop runs while it waits."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            last = _judged(await condition())
        except AssertionError as error:
            last = _NotYet(error, None)
        if not isinstance(last, _NotYet):
            return last
        if time.monotonic() >= deadline:
            _fail(last, timeout, message)
        await asyncio.sleep(interval)


class _NotYet:
    """A condition's answer that was not yet true: its AssertionError or its falsy value."""

    def __init__(self, error: AssertionError | None, value: object) -> None:
        self.error = error
        self.value = value


def _judged(value: T) -> T | _NotYet:
    return value if value else _NotYet(None, value)


def _fail(last: _NotYet, timeout: float, message: Message) -> NoReturn:
    awaited = message() if callable(message) else message
    parts = [f"not true after {timeout:g} s"]
    if awaited:
        parts.append(f"waiting for {awaited}")
    parts.append(f"last: {last.error}" if last.error is not None else f"last value: {last.value!r}")
    raise AssertionError("; ".join(parts)) from last.error
