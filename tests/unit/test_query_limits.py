"""The query server's own caps, without a database: how long a token wait lasts, how many calls
wait at once, how many accounts are followed at once."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from ledger.consistency import ConsistencyToken
from query_server.checkpoints import Checkpoints
from query_server.errors import NotCovered, ResourceExhausted
from query_server.token_wait import TokenWaiter
from query_server.watch import Watchers

AHEAD = ConsistencyToken.at(0, 5)


def _waiter(checkpoints: Checkpoints, max_wait: float = 0.05, max_waiting: int = 10) -> TokenWaiter:
    async def read_table() -> Mapping[int, int]:
        return {}

    return TokenWaiter(
        checkpoints,
        read_table,
        default_wait_seconds=10,
        max_wait_seconds=max_wait,
        max_waiting=max_waiting,
    )


def test_the_servers_cap_bounds_every_budget() -> None:
    waiter = _waiter(Checkpoints(), max_wait=2)
    assert waiter.budget(3600) == 2
    assert waiter.budget(None) == 2  # the default wait (10 s) is capped too
    assert 0.9 <= waiter.budget(1.0) < 1.0


async def test_a_wait_ended_by_the_cap_says_so() -> None:
    with pytest.raises(NotCovered, match="LEDGER_QUERY_MAX_WAIT_SECONDS") as ended:
        await _waiter(Checkpoints()).wait(AHEAD, time_remaining=3600)
    assert "call's deadline" in str(ended.value)  # "shorter than the call's deadline"
    with pytest.raises(NotCovered, match="the call's deadline") as by_deadline:
        await _waiter(Checkpoints(), max_wait=30).wait(AHEAD, time_remaining=0.05)
    assert "MAX_WAIT" not in str(by_deadline.value)


async def test_calls_past_the_waiting_cap_are_refused_and_a_slot_frees_when_a_wait_ends() -> None:
    checkpoints = Checkpoints()
    checkpoints.advance({1: 3})
    waiter = _waiter(checkpoints, max_wait=30, max_waiting=2)
    waiting = [asyncio.ensure_future(waiter.wait(AHEAD, time_remaining=30)) for _ in range(2)]
    await asyncio.sleep(0)

    with pytest.raises(ResourceExhausted, match="LEDGER_QUERY_MAX_WAITING_CALLS"):
        await waiter.wait(AHEAD, time_remaining=30)
    await waiter.wait(ConsistencyToken.at(1, 3), time_remaining=30)  # covered: never waits
    checkpoints.advance({0: 5})
    await asyncio.wait_for(asyncio.gather(*waiting), 1)
    with pytest.raises(NotCovered):  # waits again (to its deadline) instead of being refused
        await waiter.wait(ConsistencyToken.at(0, 6), time_remaining=0.01)


def test_watchers_past_the_limit_are_refused_until_one_ends() -> None:
    watchers = Watchers(limit=1)
    with watchers.slot():
        with pytest.raises(ResourceExhausted, match="LEDGER_QUERY_MAX_WATCHES"), watchers.slot():
            pass
        assert watchers.active == 1
    with watchers.slot():
        assert watchers.active == 1
    assert watchers.active == 0
