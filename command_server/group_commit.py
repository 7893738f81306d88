"""Group commit: commands that arrive together are decided in order and written in one transaction.

Commands are decided against the committed state overlaid with what earlier commands of the same
batch changed. Every caller (including the rejected ones, whose verdict may rest on the pending
state) is answered only once the batch's transaction has committed; if it aborts, all of them get
the error and the pending state is dropped (design, decision 3).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass
from datetime import UTC, datetime

from command_server.event_store import AppendFailed, EventStore, Fenced
from command_server.shards import Shard
from command_server.write_model import Outcome, WriteModel
from ledger.domain.account import Account
from ledger.domain.commands import Command, accounts_of, fingerprint
from ledger.domain.decider import decide, evolve
from ledger.domain.rejection import Rejection
from ledger.events.records import Event

log = logging.getLogger(__name__)


class NotServing(RuntimeError):
    """The server is starting, shutting down or was fenced: try again, possibly elsewhere."""


class Misrouted(RuntimeError):
    """The command touches accounts this shard does not own."""


class CommandIdReused(RuntimeError):
    """A command id that already named a different command."""


def utc_now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(slots=True)
class _Submission:
    command: Command
    fingerprint: str
    future: asyncio.Future[Outcome]


_Verdict = Outcome | BaseException | None


@dataclass(slots=True)
class _Decisions:
    verdicts: list[_Verdict]
    # Events to append, each with its partition, and the index of the submission behind it.
    events: list[tuple[Event, int]]
    authors: list[int]
    # A duplicate inside the batch (index -> index of its original) shares the original's verdict.
    aliases: dict[int, int]


class GroupCommitter:
    def __init__(
        self,
        model: WriteModel,
        store: EventStore,
        shard: Shard,
        executor: Executor,
        *,
        max_commands: int,
        max_wait_ms: int,
        on_fenced: Callable[[Fenced], None],
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._model = model
        self._store = store
        self._shard = shard
        self._executor = executor
        self._max_commands = max_commands
        self._max_wait = max_wait_ms / 1000
        self._on_fenced = on_fenced
        self._clock = clock
        self._queue: asyncio.Queue[_Submission | None] = asyncio.Queue()
        self._closing = False
        self._fenced: Fenced | None = None
        self.batches = 0
        self.commands = 0

    async def submit(self, command: Command) -> Outcome:
        """Decide and durably append `command`; raises Rejection or one of this module's errors."""
        if self._fenced is not None:
            raise NotServing(f"this shard was taken over by another instance: {self._fenced}")
        if self._closing:
            raise NotServing("the command server is shutting down; retry on its successor")
        self._check_owner(command)
        stamp = fingerprint(command)
        known = self._model.outcome(command.command_id)
        if known is not None:
            verdict = _retried(known, command, stamp)
            if isinstance(verdict, CommandIdReused):
                raise verdict
            return verdict
        future: asyncio.Future[Outcome] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Submission(command, stamp, future))
        return await future

    def _check_owner(self, command: Command) -> None:
        partitions = [self._shard.partition_of(a) for a in accounts_of(command)]
        foreign = [p for p in partitions if not self._shard.owns(p)]
        if not foreign:
            return
        if len(foreign) < len(partitions):
            shards = sorted({self._shard.owner_of(p) for p in partitions})
            raise Misrouted(
                "transfers between accounts of different shards are not supported yet: "
                f"the accounts live on shards {shards}"
            )
        raise Misrouted(
            f"account {accounts_of(command)[0]!r} is owned by shard "
            f"{self._shard.owner_of(foreign[0])} of {self._shard.count}, "
            f"this is shard {self._shard.index}: send the command there"
        )

    async def run(self) -> None:
        """Form and commit batches until `close()`; everything queued before it is still served."""
        loop = asyncio.get_running_loop()
        while True:
            first = await self._queue.get()
            if first is None:
                return
            batch = [first]
            deadline = loop.time() + self._max_wait
            stop = False
            while len(batch) < self._max_commands:
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
                    stop = True
                    break
                batch.append(item)
            await self._commit(batch)
            if stop:
                return

    async def close(self) -> None:
        self._closing = True
        self._queue.put_nowait(None)

    async def _commit(self, batch: list[_Submission]) -> None:
        decisions = self._decide(batch)
        verdicts, events = decisions.verdicts, decisions.events
        if events:
            try:
                offsets = await asyncio.get_running_loop().run_in_executor(
                    self._executor, self._store.append, events
                )
            except Fenced as exc:
                self._fenced = exc
                self._fail(batch, NotServing(f"this shard was taken over: {exc}"))
                self._on_fenced(exc)
                return
            except AppendFailed as exc:
                log.warning("batch of %d commands aborted: %s", len(batch), exc)
                self._fail(batch, exc)
                return
            except Exception as exc:
                log.exception("unexpected failure appending a batch")
                self._fail(batch, exc)
                return
            for (event, partition), offset in zip(events, offsets, strict=True):
                self._model.apply(event, partition, offset)
            for index in set(decisions.authors):
                verdicts[index] = self._model.outcome(batch[index].command.command_id)
        for duplicate, original in decisions.aliases.items():
            verdicts[duplicate] = verdicts[original]
        self.batches += 1
        self.commands += len(batch)
        for submission, verdict in zip(batch, verdicts, strict=True):
            _settle(submission.future, verdict)

    def _decide(self, batch: list[_Submission]) -> _Decisions:
        now = self._clock()
        pending: dict[str, Account] = {}
        first_of: dict[str, int] = {}
        decisions = _Decisions([None] * len(batch), [], [], {})
        verdicts, events, authors, aliases = (
            decisions.verdicts,
            decisions.events,
            decisions.authors,
            decisions.aliases,
        )
        for index, sub in enumerate(batch):
            command_id = sub.command.command_id
            known = self._model.outcome(command_id)
            if known is not None:
                verdicts[index] = _retried(known, sub.command, sub.fingerprint)
                continue
            if command_id in first_of:
                original = first_of[command_id]
                if batch[original].fingerprint == sub.fingerprint:
                    aliases[index] = original
                else:
                    verdicts[index] = _reused(sub.command)
                continue
            current = {
                a: acc
                for a in accounts_of(sub.command)
                if (acc := pending.get(a) or self._model.accounts.get(a)) is not None
            }
            try:
                decided = decide(sub.command, current, now)
            except Rejection as exc:
                verdicts[index] = exc
                continue
            first_of[command_id] = index
            for event in decided:
                pending[event.account_id] = evolve(current.get(event.account_id), event)
                current[event.account_id] = pending[event.account_id]
                events.append((event, self._shard.partition_of(event.account_id)))
                authors.append(index)
        return decisions

    def _fail(self, batch: list[_Submission], error: BaseException) -> None:
        for submission in batch:
            _settle(submission.future, error)


def _reused(command: Command) -> CommandIdReused:
    return CommandIdReused(
        f"command_id {command.command_id!r} was already used for a different command; "
        "a retry must repeat the original request exactly, a new command needs a new command_id"
    )


def _retried(known: Outcome, command: Command, stamp: str) -> Outcome | CommandIdReused:
    """A command whose id has a recorded outcome: the same answer again, or a refusal."""
    return known if known.fingerprint == stamp else _reused(command)


def _settle(future: asyncio.Future[Outcome], verdict: _Verdict) -> None:
    if future.done():
        return  # the caller gave up (deadline or cancellation); the outcome is remembered
    if verdict is None:
        future.set_exception(RuntimeError("no verdict reached for a command in the batch"))
    elif isinstance(verdict, Outcome):
        future.set_result(verdict)
    else:
        future.set_exception(verdict)
