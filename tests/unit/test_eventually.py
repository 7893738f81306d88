"""The one helper that waits for a condition, sync and async (tests/eventually.py)."""

from __future__ import annotations

import itertools

import pytest

from tests.eventually import eventually, eventually_async


def test_returns_the_first_truthy_value_of_the_condition() -> None:
    calls = itertools.count(1)
    assert eventually(lambda: max(0, next(calls) - 2), interval=0) == 1


def test_an_assertion_error_means_not_yet() -> None:
    calls = itertools.count(1)

    def third_time_lucky() -> str:
        calls_so_far = next(calls)
        assert calls_so_far >= 3, f"only {calls_so_far} calls"
        return "done"

    assert eventually(third_time_lucky, interval=0) == "done"


def test_on_timeout_it_fails_with_the_message_and_the_last_assertion() -> None:
    def never() -> None:
        raise AssertionError("the queue is still empty")

    with pytest.raises(AssertionError) as failure:
        eventually(never, timeout=0.01, interval=0, message="a message in the queue")
    text = str(failure.value)
    assert "waiting for a message in the queue" in text
    assert "the queue is still empty" in text
    assert isinstance(failure.value.__cause__, AssertionError)


def test_on_timeout_a_falsy_condition_reports_its_last_value_and_a_lazy_message() -> None:
    with pytest.raises(AssertionError, match=r"waiting for workers \[\]; last value: 0"):
        eventually(lambda: 0, timeout=0.01, interval=0, message=lambda: "workers []")


def test_other_exceptions_are_not_swallowed() -> None:
    def broken() -> bool:
        raise KeyError("no such thing")

    with pytest.raises(KeyError):
        eventually(broken, timeout=5)


async def test_the_async_twin_awaits_the_condition() -> None:
    calls = itertools.count(1)

    async def ready() -> int:
        count = next(calls)
        assert count >= 2, "not yet"
        return count

    assert await eventually_async(ready, interval=0) == 2


async def test_the_async_twin_fails_with_the_message_on_timeout() -> None:
    async def never() -> bool:
        return False

    with pytest.raises(AssertionError, match="waiting for the projector"):
        await eventually_async(never, timeout=0.01, interval=0, message="the projector")
