"""The GroupCommitter with ExecuteBatch's submissions: a batch is one queue entry that reaches
the writer whole (with its atomic span), and the queue's bound counts commands."""

from __future__ import annotations

import asyncio

import pytest

from command_server.group_commit import BATCHES_IN_PIPE, Overloaded
from command_server.writer.protocol import Ack
from ledger.command_ids import new_command_id
from ledger.domain.commands import Command, Deposit
from tests.unit import test_group_commit
from tests.unit.test_group_commit import FakeWriter, Start, behind_one_in_flight, deposit, ids

# The same fake writer and committer as test_group_commit's.
writer = test_group_commit.writer
calls = test_group_commit.calls
start = test_group_commit.start


def deposits(count: int) -> list[Command]:
    return [Deposit(new_command_id(), "a1", "1.00") for _ in range(count)]


async def test_a_batch_reaches_the_writer_whole_beside_other_calls_with_its_atomic_span(
    start: Start, writer: FakeWriter
) -> None:
    committer = start(max_commands=2)
    held = await behind_one_in_flight(committer, writer, deposit(1))
    alone = asyncio.create_task(committer.submit(deposit(2)))
    batch = deposits(3)
    together = asyncio.create_task(committer.submit_batch(batch, atomic=True))
    await asyncio.sleep(0)

    writer.gate.set()
    verdicts = await asyncio.wait_for(together, 5)
    await asyncio.wait_for(asyncio.gather(*held, alone), 5)

    # max_commands closes a transaction, but never splits a batch.
    assert ids(writer.batches) == [["d1"], ["d2", *(c.command_id for c in batch)]]
    assert writer.spans == [[], [(1, 4)]]
    assert all(isinstance(v, Ack) for v in verdicts)


async def test_a_batch_that_does_not_fit_the_room_left_is_refused_whole(
    start: Start, writer: FakeWriter
) -> None:
    committer = start(max_queued=4)
    held = await behind_one_in_flight(committer, writer, deposit(1), deposit(2), deposit(3))

    with pytest.raises(Overloaded, match=r"2 commands waiting.*same batch \(its 3 commands"):
        await committer.submit_batch(deposits(3), atomic=False)
    fits = asyncio.create_task(committer.submit_batch(deposits(2), atomic=False))
    await asyncio.sleep(0)

    writer.gate.set()
    assert len(await asyncio.wait_for(fits, 5)) == 2
    await asyncio.wait_for(asyncio.gather(*held), 5)


async def test_a_batch_larger_than_the_whole_queue_is_taken_into_an_empty_one(
    start: Start, writer: FakeWriter
) -> None:
    committer = start(max_queued=2)
    held = await behind_one_in_flight(committer, writer, deposit(1))

    large = asyncio.create_task(committer.submit_batch(deposits(5), atomic=False))
    await asyncio.sleep(0)
    with pytest.raises(Overloaded, match="5 commands waiting"):
        await committer.submit(deposit(2))

    writer.gate.set()
    assert len(await asyncio.wait_for(large, 5)) == 5
    await asyncio.wait_for(asyncio.gather(*held), 5)


async def test_a_full_batch_goes_to_the_writer_before_the_first_is_answered_a_smaller_one_waits(
    start: Start, writer: FakeWriter
) -> None:
    committer = start(max_commands=3)
    held = await behind_one_in_flight(committer, writer, deposit(1), deposit(2))
    await asyncio.sleep(0.05)
    assert ids(writer.batches) == [["d1"]]  # one command waits: not a full batch

    full = asyncio.create_task(committer.submit_batch(deposits(3), atomic=False))
    await writer.in_flight(2)
    assert len(writer.batches[1]) == 4  # what waited, with the batch that filled it
    after = asyncio.create_task(committer.submit(deposit(3)))
    await asyncio.sleep(0.05)
    assert len(writer.batches) == 2  # one command waits: not a full batch

    third = asyncio.create_task(committer.submit_batch(deposits(3), atomic=False))
    await writer.in_flight(3)
    fourth = asyncio.create_task(committer.submit_batch(deposits(3), atomic=False))
    await asyncio.sleep(0.05)
    assert len(writer.batches) == BATCHES_IN_PIPE == 3  # never more in the pipe

    writer.gate.set()
    await asyncio.wait_for(asyncio.gather(*held, full, after, third, fourth), 5)
    assert ids(writer.batches)[2][0] == "d3"


async def test_a_second_batch_goes_once_the_ahead_threshold_waits_and_is_not_full(
    start: Start, writer: FakeWriter
) -> None:
    committer = start(max_commands=100, ahead_commands=3)
    held = await behind_one_in_flight(committer, writer, deposit(1), deposit(2), deposit(3))
    await asyncio.sleep(0.05)
    assert ids(writer.batches) == [["d1"]]  # two wait: fewer than the threshold

    after = asyncio.create_task(committer.submit(deposit(4)))
    await writer.in_flight(2)
    assert ids(writer.batches)[1] == ["d2", "d3", "d4"]  # far from full, but enough to go

    writer.gate.set()
    await asyncio.wait_for(asyncio.gather(*held, after), 5)
