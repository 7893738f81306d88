"""The GroupCommitter against a fake writer: how commands form batches and how they are answered."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable

import pytest

from command_server.event_store import Fenced
from command_server.group_commit import GroupCommitter, Misrouted, Overloaded
from command_server.shards import Shard
from command_server.writer.handle import WriterLost
from command_server.writer.protocol import (
    ACK,
    BROKEN,
    COMMITTING,
    FENCED,
    NOT_SERVING,
    STALLED,
    Ack,
    AtomicSpan,
    Batch,
    BatchReply,
    NotServing,
    unpack_command,
)
from ledger.command_ids import new_command_id
from ledger.domain.commands import Command, Deposit, Transfer
from tests.eventually import eventually_async

ONE_SHARD = Shard(index=0, count=1, partitions=4)


class FakeWriter:
    """Answers every command with an Ack naming its batch (version = batch number), once `gate`
    is open; `lost` makes it raise instead, `fenced` makes it report the shard taken over;
    `health` is what its replies (and probes) say about Kafka."""

    def __init__(self) -> None:
        self.batches: list[list[Command]] = []
        self.spans: list[list[AtomicSpan]] = []
        self.gate = asyncio.Event()
        self.gate.set()
        self.lost: WriterLost | None = None
        self.bug: Exception | None = None
        self.fenced: str | None = None
        self.health = COMMITTING
        self.probes = 0
        self._handed = asyncio.Event()

    async def commit(self, message: Batch) -> BatchReply:
        batch, spans = message
        self.batches.append([unpack_command(packed) for packed in batch])
        self.spans.append(spans)
        self._handed.set()
        await self.gate.wait()
        if self.lost is not None:
            raise self.lost
        if self.bug is not None:
            bug, self.bug = self.bug, None
            raise bug
        if self.fenced is not None:
            refusal = (NOT_SERVING, f"taken over: {self.fenced}")
            return FENCED, self.fenced, [refusal] * len(batch)
        if self.health != COMMITTING:
            return self.health, "broker gone", [(NOT_SERVING, "broker gone")] * len(batch)
        answer = (ACK, len(self.batches), f"token-{len(self.batches)}")
        return COMMITTING, "", [answer] * len(batch)

    async def probe(self) -> BatchReply:
        self.probes += 1
        if self.lost is not None:
            raise self.lost
        return self.health, "broker gone" if self.health != COMMITTING else "", []

    async def transfers(self, transfer_ids: list[str]) -> BatchReply:
        return await self.probe()

    async def in_flight(self, batches: int) -> None:
        """Wait until the writer has been handed `batches` batches."""
        while len(self.batches) < batches:
            self._handed.clear()
            await asyncio.wait_for(self._handed.wait(), 5)


class Calls:
    """Records the committer's callbacks."""

    def __init__(self) -> None:
        self.fenced: list[Fenced] = []
        self.lost: list[WriterLost] = []
        self.broken: list[str] = []
        self.health: list[bool] = []


@pytest.fixture
def writer() -> FakeWriter:
    return FakeWriter()


@pytest.fixture
def calls() -> Calls:
    return Calls()


Start = Callable[..., GroupCommitter]


@pytest.fixture
async def start(writer: FakeWriter, calls: Calls) -> AsyncIterator[Start]:
    """Starts a committer's loop; stopped (its queue served) at the end of the test."""
    running: list[tuple[GroupCommitter, asyncio.Task[None]]] = []

    def started(
        shard: Shard = ONE_SHARD,
        max_commands: int = 100,
        probe_every: float = 60,
        max_queued: int = 1000,
        ahead_commands: int | None = None,
    ) -> GroupCommitter:
        committer = GroupCommitter(
            writer,
            shard,
            max_commands=max_commands,
            max_wait_ms=0,
            ahead_commands=ahead_commands,
            max_queued=max_queued,
            retry_after_ms=250,
            on_fenced=calls.fenced.append,
            on_writer_lost=calls.lost.append,
            on_broken=calls.broken.append,
            on_health=calls.health.append,
            probe_every=probe_every,
        )
        running.append((committer, asyncio.create_task(committer.run())))
        return committer

    yield started
    writer.gate.set()
    for committer, loop in running:
        await committer.close()
        await asyncio.wait_for(loop, 5)


def deposit(n: int, account_id: str = "a1") -> Deposit:
    return Deposit(f"d{n}", account_id, "1.00")


def submitted(committer: GroupCommitter, *commands: Command) -> list[asyncio.Task[Ack]]:
    return [asyncio.create_task(committer.submit(command)) for command in commands]


async def behind_one_in_flight(
    committer: GroupCommitter, writer: FakeWriter, first: Command, *queued: Command
) -> list[asyncio.Task[Ack]]:
    """Submits `first` and holds its batch at the writer (until `writer.gate` opens), then
    queues `queued` behind it; the tasks answering all of them, in that order."""
    writer.gate.clear()
    tasks = submitted(committer, first)
    await writer.in_flight(1)
    tasks += submitted(committer, *queued)
    # Let each submit run up to its queueing.
    for _ in range(5):
        await asyncio.sleep(0)
    return tasks


async def answered(tasks: list[asyncio.Task[Ack]]) -> list[Ack | BaseException]:
    """The tasks' answers (or exceptions); a committer that stopped answering fails the test."""
    return await asyncio.wait_for(asyncio.gather(*tasks, return_exceptions=True), 5)


async def acked(tasks: list[asyncio.Task[Ack]]) -> list[Ack]:
    answers = await answered(tasks)
    assert all(isinstance(answer, Ack) for answer in answers), answers
    return [answer for answer in answers if isinstance(answer, Ack)]


def ids(batches: list[list[Command]]) -> list[list[str]]:
    return [[command.command_id for command in batch] for batch in batches]


async def test_commands_arriving_while_a_commit_is_in_flight_form_the_next_batch(
    start: Start, writer: FakeWriter
) -> None:
    committer = start()
    tasks = await behind_one_in_flight(committer, writer, deposit(1), deposit(2), deposit(3))

    writer.gate.set()
    answers = await acked(tasks)

    assert ids(writer.batches) == [["d1"], ["d2", "d3"]]
    assert [answer.version for answer in answers] == [1, 2, 2]


async def test_max_commands_bounds_a_batch(start: Start, writer: FakeWriter) -> None:
    committer = start(max_commands=2)
    queued = (deposit(n) for n in range(2, 7))
    tasks = await behind_one_in_flight(committer, writer, deposit(1), *queued)

    writer.gate.set()
    await answered(tasks)

    assert [len(batch) for batch in writer.batches] == [1, 2, 2, 1]


async def test_close_still_serves_everything_queued_before_it(
    start: Start, writer: FakeWriter
) -> None:
    committer = start()
    tasks = await behind_one_in_flight(committer, writer, deposit(1), deposit(2), deposit(3))

    await committer.close()
    with pytest.raises(NotServing):
        await committer.submit(deposit(4))
    writer.gate.set()
    answers = await acked(tasks)

    assert [answer.token for answer in answers] == ["token-1", "token-2", "token-2"]
    assert ids(writer.batches) == [["d1"], ["d2", "d3"]]


async def test_a_lost_writer_answers_not_serving_to_the_batch_and_to_later_submits(
    start: Start, writer: FakeWriter, calls: Calls
) -> None:
    committer = start()
    writer.lost = WriterLost("the writer process is gone")
    batch = submitted(committer, deposit(1), deposit(2))

    answers = await answered(batch)
    with pytest.raises(NotServing):
        await committer.submit(deposit(3))

    assert [type(answer) for answer in answers] == [NotServing, NotServing]
    assert calls.lost == [writer.lost]
    assert len(writer.batches) == 1


async def test_a_bug_fails_its_batch_and_the_loop_serves_the_next_one(
    start: Start, writer: FakeWriter
) -> None:
    committer = start()
    writer.bug = KeyError("a command kind the pipe does not know")
    answers = await answered(submitted(committer, deposit(1)))

    assert [type(answer) for answer in answers] == [KeyError]
    assert (await committer.submit(deposit(2))).version == 2


async def test_a_fenced_reply_calls_on_fenced_once_and_refuses_what_follows(
    start: Start, writer: FakeWriter, calls: Calls
) -> None:
    committer = start()
    writer.fenced = "producer fenced"
    tasks = await behind_one_in_flight(committer, writer, deposit(1), deposit(2))

    writer.gate.set()
    answers = await answered(tasks)
    with pytest.raises(NotServing):
        await committer.submit(deposit(3))

    assert [type(answer) for answer in answers] == [NotServing, NotServing]
    assert [str(exc) for exc in calls.fenced] == ["producer fenced"]
    assert len(writer.batches) == 1  # the queued batch never reached the writer


async def test_a_caller_that_gave_up_does_not_break_settling_its_batch(
    start: Start, writer: FakeWriter
) -> None:
    committer = start()
    writer.gate.clear()
    gave_up, waited = submitted(committer, deposit(1), deposit(2))
    await writer.in_flight(1)

    gave_up.cancel()
    writer.gate.set()

    assert [answer.version for answer in await acked([waited])] == [1]
    assert [answer.version for answer in await acked(submitted(committer, deposit(3)))] == [2]
    assert gave_up.cancelled()
    assert ids(writer.batches) == [["d1", "d2"], ["d3"]]


@pytest.mark.parametrize(
    ("command", "says"),
    [
        (deposit(1, account_id="a1"), "owned by shard 1 of 2, this is shard 0"),
        (Transfer("t1", "a1", "a4", "1.00"), "owned by shard 1 of 2, this is shard 0"),
    ],
    ids=["another shard's account", "a transfer from another shard's account"],
)
async def test_misrouted_commands_are_refused_before_they_are_queued(
    start: Start, writer: FakeWriter, command: Command, says: str
) -> None:
    # Of 4 partitions, shard 0 of 2 owns 0 and 2: a4 lives in partition 2, a1 in partition 3.
    committer = start(shard=Shard(index=0, count=2, partitions=4))

    with pytest.raises(Misrouted, match=says):
        await committer.submit(command)
    answer = await committer.submit(deposit(2, account_id="a4"))

    assert answer.version == 1
    assert ids(writer.batches) == [["d2"]]


async def test_health_follows_what_replies_say_about_kafka(
    start: Start, writer: FakeWriter, calls: Calls
) -> None:
    committer = start()
    writer.health = STALLED
    with pytest.raises(NotServing):
        await committer.submit(deposit(1))
    writer.health = COMMITTING
    await committer.submit(deposit(2))
    await committer.submit(deposit(3))

    assert calls.health == [False, True]
    assert committer.serving


async def test_idle_probes_let_health_follow_kafka_without_commands(
    start: Start, writer: FakeWriter, calls: Calls
) -> None:
    committer = start(probe_every=0.01)
    writer.health = STALLED
    await eventually_async(lambda: _true(calls.health == [False]), timeout=5)
    writer.health = COMMITTING
    await eventually_async(lambda: _true(calls.health == [False, True]), timeout=5)

    assert committer.serving
    assert writer.batches == []


async def test_a_broken_reply_stops_taking_commands(
    start: Start, writer: FakeWriter, calls: Calls
) -> None:
    committer = start()
    writer.health = BROKEN

    with pytest.raises(NotServing):
        await committer.submit(deposit(1))
    with pytest.raises(NotServing, match="broker gone"):
        await committer.submit(deposit(2))

    assert calls.broken == ["broker gone"]
    assert len(writer.batches) == 1


async def test_commands_past_the_queue_bound_are_refused_at_once_with_a_retry_hint(
    start: Start, writer: FakeWriter
) -> None:
    committer = start(max_commands=2, max_queued=3)
    # Three batches at the (stalled) writer, the second and third full ones (which may go
    # before the first is answered), then three commands queued behind them: the bound.
    first, *full = (Deposit(new_command_id(), "a1", "1.00") for _ in range(3))
    tasks = await behind_one_in_flight(committer, writer, first, *full)
    await writer.in_flight(2)
    tasks += submitted(committer, *(Deposit(new_command_id(), "a1", "1.00") for _ in range(2)))
    await writer.in_flight(3)
    tasks += submitted(committer, *(Deposit(new_command_id(), "a1", "1.00") for _ in range(3)))
    for _ in range(5):
        await asyncio.sleep(0)

    with pytest.raises(Overloaded, match="retry the same command in 250 ms") as refused:
        await committer.submit(Deposit(new_command_id(), "a1", "1.00"))
    assert refused.value.retry_after_ms == 250
    assert "3 commands waiting" in str(refused.value)
    assert not any(task.done() for task in tasks)

    writer.gate.set()
    await acked(tasks)
    # Once the queue drained, commands are taken again.
    assert (await committer.submit(Deposit(new_command_id(), "a1", "1.00"))).version == 6
    assert [len(batch) for batch in writer.batches] == [1, 2, 2, 2, 1, 1]


async def test_close_still_fits_behind_a_full_queue(start: Start, writer: FakeWriter) -> None:
    committer = start(max_queued=1)
    queued = Deposit(new_command_id(), "a1", "1.00")
    tasks = await behind_one_in_flight(
        committer, writer, Deposit(new_command_id(), "a1", "1.00"), queued
    )

    await committer.close()
    writer.gate.set()

    assert len(await acked(tasks)) == 2


async def _true(value: bool) -> bool:
    return value
