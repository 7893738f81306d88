"""The shared checkpoint board and the token waiter (the NOTIFY payloads that feed them:
test_read_model_contract.py)."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest

from ledger.consistency import ConsistencyToken
from query_server.checkpoints import Checkpoints, ShuttingDown
from query_server.errors import NotCovered
from query_server.token_wait import TokenWaiter


async def test_a_waiter_wakes_once_every_partition_of_its_token_is_covered() -> None:
    checkpoints = Checkpoints()
    future = checkpoints.register(ConsistencyToken({0: 5, 1: 3}))
    checkpoints.advance({0: 5})
    await asyncio.sleep(0)
    assert not future.done()
    checkpoints.advance({1: 2, 2: 100})
    assert not future.done()
    checkpoints.advance({1: 3})
    assert future.done()
    checkpoints.discard(future)


async def test_checkpoints_only_move_forward() -> None:
    checkpoints = Checkpoints()
    checkpoints.advance({0: 5})
    checkpoints.advance({0: 3})
    assert checkpoints.known == {0: 5}
    assert checkpoints.register(ConsistencyToken.at(0, 4)).done()


async def test_a_discarded_waiter_is_forgotten() -> None:
    checkpoints = Checkpoints()
    future = checkpoints.register(ConsistencyToken.at(0, 1))
    checkpoints.discard(future)
    future.cancel()
    checkpoints.advance({0: 1})
    assert future.cancelled()


async def test_closing_fails_present_and_future_waiters() -> None:
    checkpoints = Checkpoints()
    waiting = asyncio.ensure_future(checkpoints.wait(ConsistencyToken.at(0, 1)))
    await asyncio.sleep(0)
    checkpoints.close()
    with pytest.raises(ShuttingDown):
        await waiting
    with pytest.raises(ShuttingDown):
        await checkpoints.wait(ConsistencyToken.at(0, 1))


def _waiter(checkpoints: Checkpoints, table: Mapping[int, int]) -> TokenWaiter:
    async def read_table() -> Mapping[int, int]:
        return table

    return TokenWaiter(checkpoints, read_table, default_wait_seconds=0.05)


async def test_without_the_listen_connection_a_waiter_reads_the_table() -> None:
    # The NOTIFY for offset 7 went out while nobody listened: only the table has it.
    checkpoints = Checkpoints()
    await _waiter(checkpoints, {0: 7}).wait(ConsistencyToken.at(0, 7), time_remaining=None)
    assert checkpoints.known == {0: 7}


def _listening_waiter(trust_notify_seconds: float) -> tuple[Checkpoints, TokenWaiter, list[int]]:
    """A waiter of a process whose LISTEN connection is up; the table it may read says 7, and
    the list counts its reads."""
    checkpoints = Checkpoints()
    checkpoints.listening = True
    reads: list[int] = []

    async def read_table() -> Mapping[int, int]:
        reads.append(1)
        return {0: 7}

    waiter = TokenWaiter(checkpoints, read_table, 5, trust_notify_seconds=trust_notify_seconds)
    return checkpoints, waiter, reads


async def test_while_listening_a_waiter_waits_for_the_notification_not_the_table() -> None:
    checkpoints, waiter, reads = _listening_waiter(trust_notify_seconds=5)
    waiting = asyncio.ensure_future(waiter.wait(ConsistencyToken.at(0, 7), time_remaining=5))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    checkpoints.advance({0: 7})
    await asyncio.wait_for(waiting, 1)
    assert reads == []


async def test_while_listening_a_notification_slow_to_come_sends_the_waiter_to_the_table() -> None:
    # A half-open LISTEN connection still counts as listening until its next ping fails.
    checkpoints, waiter, reads = _listening_waiter(trust_notify_seconds=0.02)
    await asyncio.wait_for(waiter.wait(ConsistencyToken.at(0, 7), time_remaining=5), 1)
    assert (reads, dict(checkpoints.known)) == ([1], {0: 7})


async def test_a_notification_wakes_the_waiter() -> None:
    checkpoints = Checkpoints()
    waiter = _waiter(checkpoints, {0: 1})
    waiting = asyncio.ensure_future(waiter.wait(ConsistencyToken.at(0, 2), time_remaining=5))
    await asyncio.sleep(0.01)
    assert not waiting.done()
    checkpoints.advance({0: 2})
    await asyncio.wait_for(waiting, 1)


async def test_a_token_never_covered_times_out_with_an_explanation() -> None:
    checkpoints = Checkpoints()
    waiter = _waiter(checkpoints, {0: 1})
    with pytest.raises(NotCovered, match="partition 0"):
        await waiter.wait(ConsistencyToken({0: 2, 1: 0}), time_remaining=None)
    assert checkpoints.known == {0: 1}


def test_the_wait_ends_before_the_callers_deadline() -> None:
    waiter = _waiter(Checkpoints(), {})
    assert 0.9 <= waiter.budget(1.0) < 1.0
    assert 0 <= waiter.budget(0.01) < 0.01
    assert waiter.budget(-1) == 0
    assert waiter.budget(None) == 0.05
