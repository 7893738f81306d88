"""Group commit, gRPC side: commands that arrive together go to the writer as one batch.

The writer process (command_server/writer) decides a batch's commands in order and writes
their events in one Kafka transaction. While it works on one batch, the next one queues up
here: a batch is whatever arrived during the previous commit (bounded by `max_commands`,
optionally lingering up to `max_wait_ms`); a second batch goes into the pipe before the first
is answered once `ahead_commands` wait (up to `BATCHES_IN_PIPE`), so that the writer decides
it while the first one's transaction commits. Every caller is answered once the writer has
answered its batch, that is once the transaction committed or aborted (decision 3).

Each reply also says what the writer learnt about Kafka, which health follows: NOT_SERVING
while the writer cannot commit, SERVING again once a transaction commits. While no command
comes, the committer asks the writer every `probe_every` seconds, so that health follows a
broker that goes away (or comes back) between commands too.

The queue is bounded (`max_queued`, counted in commands): while Kafka is slow or gone, commands
past the bound are refused at once (`Overloaded`, RESOURCE_EXHAUSTED with a retry hint) rather
than held in memory until their callers give up. A client's batch (ExecuteBatch) is one queue
entry: it goes to the writer whole, in one transaction, and is refused whole when it does not fit
in the room left; one larger than the whole bound is taken only into an empty queue, so that any
batch the API allows gets in and the queue never holds more than the larger of the two.
"""

from __future__ import annotations

import asyncio
import logging
import time
from asyncio import wait_for
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from command_server.event_store import Fenced
from command_server.shards import Shard
from command_server.transfer_waits import ASK_EVERY, TransferState, TransferWaits
from command_server.writer.handle import Writer, WriterLost
from command_server.writer.protocol import (
    BROKEN,
    COMMITTING,
    FENCED,
    STALLED,
    Ack,
    AtomicSpan,
    NotServing,
    PackedCommand,
    pack_command,
    unpack_verdict,
)
from ledger.domain.commands import Command, Transfer, accounts_of
from ledger.telemetry.metrics import CommandMetrics

log = logging.getLogger(__name__)

BATCHES_IN_PIPE = 3
"""Batches at the writer, unanswered: one committing, one decided meanwhile, one waiting (the
writer replies only after producing the next; docs/performance.md, "Producing first")."""


class Misrouted(RuntimeError):
    """The command touches accounts this shard does not own."""


class Overloaded(RuntimeError):
    """The queue is full; the caller should retry after `retry_after_ms`."""

    def __init__(self, queued: int, limit: int, retry_after_ms: int, commands: int = 1) -> None:
        what = "command" if commands == 1 else f"batch (its {commands} commands do not fit)"
        super().__init__(
            f"the command server has {queued} commands waiting for the event store and holds "
            f"at most {limit} (LEDGER_COMMAND_QUEUE_MAX); nothing was done: retry the same "
            f"{what} in {retry_after_ms} ms"
        )
        self.retry_after_ms = retry_after_ms


Verdict = Ack | BaseException
"""A command's outcome: its Ack, or the exception the servicer maps to a status."""


@dataclass(slots=True)
class _Submission:
    """One call's commands (one, or an ExecuteBatch's), committed in one transaction."""

    commands: list[PackedCommand]
    atomic: bool
    future: asyncio.Future[list[Verdict]]


class GroupCommitter:
    def __init__(
        self,
        writer: Writer,
        shard: Shard,
        *,
        max_commands: int,
        max_wait_ms: int,
        ahead_commands: int | None = None,
        max_queued: int,
        retry_after_ms: int,
        on_fenced: Callable[[Fenced], None],
        on_writer_lost: Callable[[WriterLost], None],
        on_broken: Callable[[str], None] = lambda why: None,
        on_health: Callable[[bool], None] = lambda serving: None,
        probe_every: float = 1.0,
        metrics: CommandMetrics | None = None,
        transfer_waiters_max: int = 10_000,
    ) -> None:
        self._writer = writer
        self._shard = shard
        self._max_commands = max_commands
        self._ahead_commands = max_commands if ahead_commands is None else ahead_commands
        """Commands that must wait before a second batch goes into the pipe."""
        self._max_wait = max_wait_ms / 1000
        self._max_queued = max_queued
        self._retry_after_ms = retry_after_ms
        self._on_fenced = on_fenced
        self._on_writer_lost = on_writer_lost
        self._on_broken = on_broken
        self._on_health = on_health
        self._probe_every = probe_every
        self.serving = True
        """Whether the writer's last word was that Kafka takes commits."""
        self._broken: str | None = None
        self._metrics = metrics or CommandMetrics.create(registry=None)
        # Bounded by `submit`'s check, not by maxsize: close()'s sentinel must always fit.
        self._queue: asyncio.Queue[_Submission | None] = asyncio.Queue()
        self._queued = 0
        """Commands in the queue."""
        self._wake: asyncio.Future[None] | None = None  # `run` waits: an answer, or a full batch
        self._closing = False
        self._fenced: Fenced | None = None
        self._lost: WriterLost | None = None
        self.batches = 0
        self.commands = 0
        self._waits = TransferWaits(transfer_waiters_max)
        self._asked = 0.0
        """When the writer was last asked how waited-for transfers stand (loop time)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        """The loop `run` runs on: asking asyncio for it costs a getpid() system call per call
        on Python 3.11, once per command on the unary path."""

    async def submit(self, command: Command) -> Ack:
        """Decide and durably append `command`; raises Rejection or one of this module's errors."""
        if self._shard.count > 1:
            self._check_owner(command)
        (verdict,) = await self.submit_packed([pack_command(command)], atomic=False)
        if isinstance(verdict, BaseException):
            raise verdict
        return verdict

    async def submit_batch(self, commands: list[Command], *, atomic: bool) -> list[Verdict]:
        """Decide `commands` in order and durably append what they decided, in one transaction;
        `atomic`: all of them or none. One verdict per command; raises NotServing or Overloaded
        for the whole batch (nothing done). Commands must be owned by this shard (`misrouted`)."""
        return await self.submit_packed([pack_command(c) for c in commands], atomic=atomic)

    async def submit_packed(self, commands: list[PackedCommand], *, atomic: bool) -> list[Verdict]:
        """`submit_batch` of commands already packed for the pipe (`protocol.pack_command`)."""
        if self._fenced is not None:
            raise NotServing(f"this shard was taken over by another instance: {self._fenced}")
        if self._lost is not None:
            raise NotServing(f"the command server lost its event-store writer: {self._lost}")
        if self._broken is not None:
            raise NotServing(f"the command server stops: {self._broken}")
        if self._closing:
            raise NotServing("the command server is shutting down; retry on its successor")
        if self._queued and self._queued + len(commands) > self._max_queued:
            raise Overloaded(self._queued, self._max_queued, self._retry_after_ms, len(commands))
        loop = self._loop or asyncio.get_running_loop()
        future: asyncio.Future[list[Verdict]] = loop.create_future()
        self._queue.put_nowait(_Submission(commands, atomic, future))
        self._queued += len(commands)
        if self._queued >= self._ahead_commands:
            self._answered()  # a second batch may go
        return await future

    @property
    def owns_every_account(self) -> bool:
        """Whether no command can be misrouted here (one shard): `misrouted` is always None."""
        return self._shard.count == 1

    def misrouted(self, command: Command) -> Misrouted | None:
        """Why this shard cannot take `command`, if it cannot."""
        if self._shard.count == 1:
            return None
        try:
            self._check_owner(command)
        except Misrouted as exc:
            return exc
        return None

    def _check_owner(self, command: Command) -> None:
        """Refuse commands for accounts of other shards (a single shard owns everything). A
        command belongs to the shard of its first account (a transfer's debited one): a
        transfer to another shard's account is a saga (docs/design.md, decision 13)."""
        account = accounts_of(command)[0]
        partition = self._shard.partition_of(account)
        if self._shard.owns(partition):
            return
        raise Misrouted(
            f"account {account!r} is owned by shard "
            f"{self._shard.owner_of(partition)} of {self._shard.count}, "
            f"this is shard {self._shard.index}: send the command there"
        )

    def crosses_shards(self, command: Transfer) -> bool:
        """Whether the transfer's credited account lives on another shard (a saga)."""
        return not self._shard.owns(self._shard.partition_of(command.to_account_id))

    async def transfer_state(self, transfer_id: str, seconds: float) -> TransferState:
        """How a cross-shard transfer ended, waiting up to `seconds` (PENDING if not known)."""
        return await self._waits.wait(transfer_id, seconds)

    async def run(self) -> None:
        """Form and commit batches until `close()`; everything queued before it is still served."""
        loop = self._loop = asyncio.get_running_loop()
        in_flight: deque[asyncio.Task[None]] = deque()
        try:
            while True:
                if in_flight and not self._room_for_another(in_flight):
                    await self._answer_or_full_batch(in_flight)
                    continue
                queue = self._queue
                try:
                    idle = ASK_EVERY if self._waits else self._probe_every
                    # Under load a command waits already: no timer and no task for it then.
                    first = (
                        queue.get_nowait() if queue.qsize() else await wait_for(queue.get(), idle)
                    )
                except TimeoutError:
                    await (self._ask() if self._waits else self._probe())
                    continue
                if first is None:
                    return
                batch, stop = await self._gather(first, loop)
                # Tasks start in the order they are made, and `_commit` hands its batch to the
                # pipe before it first waits: batches reach the writer in the order formed.
                in_flight.append(loop.create_task(self._commit_guarded(batch)))
                if self._waits and loop.time() - self._asked >= ASK_EVERY:
                    await self._ask()
                if stop:
                    return
        finally:
            await asyncio.gather(*in_flight, return_exceptions=True)

    def _room_for_another(self, in_flight: deque[asyncio.Task[None]]) -> bool:
        while in_flight and in_flight[0].done():
            in_flight.popleft()
        enough = self._queued >= self._ahead_commands
        return not in_flight or (len(in_flight) < BATCHES_IN_PIPE and enough)

    async def _answer_or_full_batch(self, in_flight: deque[asyncio.Task[None]]) -> None:
        """Wait until the oldest batch is answered or a full batch waits in the queue: one
        future either wakes (under unary load this runs once per batch)."""
        oldest = in_flight[0]
        wake = self._wake = (self._loop or asyncio.get_running_loop()).create_future()
        oldest.add_done_callback(self._answered)
        try:
            await wake
        finally:
            oldest.remove_done_callback(self._answered)
            self._wake = None

    def _answered(self, _: object = None) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def _gather(
        self, first: _Submission, loop: asyncio.AbstractEventLoop
    ) -> tuple[list[_Submission], bool]:
        """`first` and what else is queued, up to `max_commands` (lingering up to
        `max_wait_ms`); and whether `close()` was met on the way."""
        batch = [first]
        commands = len(first.commands)
        self._queued -= commands
        deadline = loop.time() + self._max_wait
        while commands < self._max_commands:
            try:
                item = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    break
                try:
                    item = await asyncio.wait_for(self._queue.get(), remaining)
                except TimeoutError:
                    break
            if item is None:
                return batch, True
            batch.append(item)
            commands += len(item.commands)
            self._queued -= len(item.commands)
        return batch, False

    async def _commit_guarded(self, batch: list[_Submission]) -> None:
        try:
            await self._commit(batch)
        except Exception as error:  # a bug, but one batch's: its callers get INTERNAL
            log.exception("bug committing a batch of %d submissions", len(batch))
            self._fail(batch, error)

    async def close(self) -> None:
        self._closing = True
        self._queue.put_nowait(None)

    async def _commit(self, batch: list[_Submission]) -> None:
        if self._fenced is not None:
            self._fail(batch, NotServing(f"this shard was taken over: {self._fenced}"))
            return
        if self._lost is not None:
            self._fail(batch, NotServing(f"the event-store writer is gone: {self._lost}"))
            return
        if self._broken is not None:
            self._fail(batch, NotServing(f"the command server stops: {self._broken}"))
            return
        began = time.perf_counter()
        packed: list[PackedCommand] = []
        spans: list[AtomicSpan] = []
        for submission in batch:
            if submission.atomic:
                spans.append((len(packed), len(packed) + len(submission.commands)))
            packed.extend(submission.commands)
        try:
            health, why, verdicts = await self._writer.commit((packed, spans))
        except WriterLost as exc:
            self._writer_lost(exc)
            self._fail(batch, NotServing(f"the event-store writer is gone: {exc}"))
            return
        self._metrics.observe_commit(time.perf_counter() - began)
        self._metrics.observe_batch(len(packed))
        self.batches += 1
        self.commands += len(packed)
        if len(verdicts) != len(packed):
            raise AssertionError(f"{len(verdicts)} verdicts for {len(packed)} commands")
        start = 0
        for submission in batch:
            stop = start + len(submission.commands)
            _settle(submission.future, [unpack_verdict(v) for v in verdicts[start:stop]])
            start = stop
        self._learn(health, why)

    async def _probe(self) -> None:
        """While idle: ask the writer whether Kafka takes commits (nothing to ask once stopped)."""
        if self._fenced is not None or self._lost is not None or self._broken is not None:
            return
        try:
            health, why, _ = await self._writer.probe()
        except WriterLost as exc:
            self._writer_lost(exc)
            return
        self._learn(health, why)

    async def _ask(self) -> None:
        """While calls wait for cross-shard transfers: how do those stand?"""
        self._asked = asyncio.get_running_loop().time()
        if self._fenced is not None or self._lost is not None or self._broken is not None:
            return
        try:
            health, why, states = await self._writer.transfers(self._waits.ids())
        except WriterLost as exc:
            self._writer_lost(exc)
            return
        self._learn(health, why)
        self._waits.settle(states)

    def _learn(self, health: int, why: str) -> None:
        """Act on what a reply says about Kafka: health, or a stop."""
        if health == FENCED and self._fenced is None:
            self._fenced = Fenced(why)
            self._on_fenced(self._fenced)
        elif health == BROKEN and self._broken is None:
            self._broken = why
            self._on_broken(why)
        if health in (STALLED, FENCED, BROKEN) and self.serving:
            self.serving = False
            log.warning("not serving: the event store cannot take writes now: %s", why)
            self._on_health(False)
        elif health == COMMITTING and not self.serving:
            self.serving = True
            log.info("serving again: the event store takes writes")
            self._on_health(True)

    def _writer_lost(self, exc: WriterLost) -> None:
        log.critical("the event-store writer process is gone: %s", exc)
        self._lost = exc
        self._on_writer_lost(exc)

    def _fail(self, batch: list[_Submission], error: BaseException) -> None:
        for submission in batch:
            _settle(submission.future, error)


def _settle(future: asyncio.Future[list[Verdict]], verdict: list[Verdict] | BaseException) -> None:
    if future.done():
        return  # the caller gave up (deadline or cancellation); the outcome is remembered
    if isinstance(verdict, BaseException):
        future.set_exception(verdict)
    else:
        future.set_result(verdict)
