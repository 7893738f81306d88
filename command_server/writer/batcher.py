"""The Batcher: decides a batch's commands in order, appends their events in one transaction,
folds them into the write model once committed, and answers one verdict per command.

Each command is decided against the committed state overlaid with what the batch's earlier
commands changed. Every verdict (a rejection too: it may rest on that pending state) holds only
if the transaction commits; if it aborts, every command of the batch gets the failure and the
pending state is dropped, so a retry is decided afresh (docs/design.md, decision 3). A command
whose id already has an outcome gets that outcome again, or a refusal if it is not the same
command; one whose id is no longer remembered but is not newer than what its partitions forgot
is refused as too old to deduplicate (docs/design.md, decision 4).

An atomic span of the batch (one ExecuteBatch with `atomic`) is decided like the rest, each
command seeing the earlier ones' effects; if any of its commands fails, the span's events and
pending state are taken back, and its other commands are answered `NotApplied`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Protocol

from command_server.event_store import (
    AppendFailed,
    AppendUnsettled,
    DeliveryUnconfirmed,
    Fenced,
    UnreadableLog,
)
from command_server.shards import Shard
from command_server.write_model import Outcome, WriteModel
from command_server.writer.protocol import (
    BROKEN,
    COMMITTING,
    FENCED,
    STALLED,
    UNCHANGED,
    AtomicSpan,
    BatchReply,
    CommandIdReused,
    NotApplied,
    NotServing,
    PackedCommand,
    WriterFailed,
    pack_verdict,
    unpack_command,
)
from ledger.command_ids import command_id_time, millis_time
from ledger.domain.account import Account
from ledger.domain.commands import Command, accounts_of, fingerprint, literal_fingerprint
from ledger.domain.decider import InconsistentEvent, decide, evolve
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.events.records import Event

log = logging.getLogger(__name__)

CATCH_UP_TIMEOUT = 10.0
"""Seconds a read of the log after an unsettled transaction may take before it is retried."""


class Appender(Protocol):
    """The part of the event store the batcher uses."""

    def append(self, events: Sequence[tuple[Event, int]]) -> list[int]: ...

    def recover(self) -> None: ...

    def probe(self, partitions: Sequence[int]) -> str | None: ...

    def replay(
        self,
        partitions: Sequence[int],
        apply: Callable[[Event, int, int], None],
        start: dict[int, int] | None = None,
        timeout: float = 600,
    ) -> int: ...


def utc_now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(slots=True)
class _Submission:
    command: Command
    # Computed only when needed (a retry or a duplicate in the batch): `decide` hashes the
    # command itself for its events, so the common path pays for one fingerprint, not two.
    _fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.command)
        return self._fingerprint


_Verdict = Outcome | BaseException | None


@dataclass(slots=True)
class _Decisions:
    verdicts: list[_Verdict]
    # Events to append, each with its partition, and the index of the submission behind it.
    events: list[tuple[Event, int]]
    authors: list[int]
    # The state each event leaves its account in, already computed while deciding.
    states: list[Account]
    # A duplicate inside the batch (index -> index of its original) shares the original's verdict.
    aliases: dict[int, int]


class Batcher:
    """Decides and commits one batch at a time; runs in the writer process."""

    def __init__(
        self,
        model: WriteModel,
        store: Appender,
        shard: Shard,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._model = model
        self._store = store
        self._shard = shard
        self._clock = clock
        self._halted: tuple[int, str] | None = None
        """(FENCED or BROKEN, why): no batch is taken any more."""
        self._behind: str | None = None
        """Why the model may lack events the log holds (an unsettled transaction), if it may."""
        self.appended = 0
        """Events the last batch appended (or a catch-up folded in)."""

    def commit(self, packed: list[PackedCommand], atomic: Sequence[AtomicSpan] = ()) -> BatchReply:
        batch = [_Submission(unpack_command(command)) for command in packed]
        if self._halted is not None:
            return self._refuse(len(batch))
        if self._behind is not None:
            why = self._catch_up()
            if why is not None:
                refusal = NotServing(f"the event store cannot take writes now ({why}); retry")
                return STALLED, why, [pack_verdict(refusal)] * len(batch)
        decisions = self._decide(batch, dict(atomic))
        verdicts, events = decisions.verdicts, decisions.events
        self.appended = 0
        health, why = UNCHANGED, ""
        if events:
            try:
                offsets = self._store.append(events)
            except Fenced as exc:
                self._halted = FENCED, str(exc)
                return self._refuse(len(batch))
            except DeliveryUnconfirmed as exc:
                log.critical("the writer stops: %s", exc)
                self._halted = BROKEN, str(exc)
                return self._refuse(len(batch))
            except AppendFailed as exc:
                log.warning("batch of %d commands not committed: %s", len(batch), exc)
                if isinstance(exc, AppendUnsettled):
                    # The failed transaction may have committed: learn it from the log before
                    # deciding anything again.
                    self._behind = str(exc)
                    self._catch_up()
                    if self._halted is not None:
                        return self._refuse(len(batch))
                return STALLED, str(exc), [pack_verdict(exc)] * len(batch)
            except Exception as exc:
                log.exception("unexpected failure appending a batch")
                failed = WriterFailed(f"appending the batch failed: {exc!r}")
                return UNCHANGED, "", [pack_verdict(failed)] * len(batch)
            health = COMMITTING
            self.appended = len(events)
            apply = self._model.apply_decided
            for (event, partition), offset, state in zip(
                events, offsets, decisions.states, strict=True
            ):
                apply(event, state, partition, offset)
            for index in set(decisions.authors):
                verdicts[index] = self._model.outcome(batch[index].command.command_id)
        for duplicate, original in decisions.aliases.items():
            verdicts[duplicate] = verdicts[original]
        return health, why, [pack_verdict(verdict) for verdict in verdicts]

    def probe(self) -> BatchReply:
        """Whether Kafka would take a transaction now (recovering first if need be)."""
        if self._halted is not None:
            return self._refuse(0)
        why = self._catch_up() if self._behind is not None else None
        if why is None:
            try:
                why = self._store.probe(self._shard.owned_partitions)
            except Fenced as exc:
                self._halted = FENCED, str(exc)
                return self._refuse(0)
        return (STALLED, why, []) if why is not None else (COMMITTING, "", [])

    def _catch_up(self) -> str | None:
        """Initialise replaced producers, then fold in whatever the log holds beyond the model
        (a transaction whose fate was unsettled); None once done, otherwise why not."""
        try:
            self._store.recover()
            start = {p: self._model.positions.get(p, -1) + 1 for p in self._shard.owned_partitions}
            caught_up = self._store.replay(
                self._shard.owned_partitions, self._model.apply, start, timeout=CATCH_UP_TIMEOUT
            )
        except Fenced as exc:
            self._halted = FENCED, str(exc)
            return str(exc)
        except (UnreadableLog, InconsistentEvent) as exc:
            # The log holds something the model cannot fold: stop rather than guess.
            log.critical("the writer stops: %s", exc)
            self._halted = BROKEN, str(exc)
            return str(exc)
        except Exception as exc:
            self._behind = f"{exc}"
            log.warning("the writer cannot read the log back yet: %s", exc)
            return self._behind
        if caught_up:
            log.warning("%d events of an unsettled transaction were committed after all", caught_up)
        self._behind = None
        return None

    def _refuse(self, commands: int) -> BatchReply:
        assert self._halted is not None
        health, why = self._halted
        if health == FENCED:
            refusal = NotServing(f"this shard was taken over: {why}")
        else:
            refusal = NotServing(f"the command server stops: {why}")
        return health, why, [pack_verdict(refusal)] * commands

    def _decide(self, batch: list[_Submission], atomic: dict[int, int]) -> _Decisions:
        now = self._clock()
        pending: dict[str, Account] = {}
        unit: _AtomicUnit | None = None
        first_of: dict[str, int] = {}
        decisions = _Decisions([None] * len(batch), [], [], [], {})
        verdicts, events, authors, states, aliases = (
            decisions.verdicts,
            decisions.events,
            decisions.authors,
            decisions.states,
            decisions.aliases,
        )
        committed = self._model.accounts
        partition_of = self._shard.partition_of
        for index, sub in enumerate(batch):
            if unit is not None and index == unit.stop:
                unit.settle(decisions, pending, first_of)
                unit = None
            if index in atomic:
                unit = _AtomicUnit(index, atomic[index], len(events))
            command_id = sub.command.command_id
            known = self._model.outcome(command_id)
            if known is not None:
                verdicts[index] = _retried(known, sub)
                continue
            if command_id in first_of:
                original = first_of[command_id]
                if batch[original].fingerprint == sub.fingerprint:
                    aliases[index] = original
                else:
                    verdicts[index] = _reused(sub.command)
                continue
            if self._model.horizons:
                partitions = [partition_of(a) for a in accounts_of(sub.command)]
                forgetful = self._model.forgotten(command_id, partitions)
                if forgetful is not None:
                    verdicts[index] = self._too_old(sub.command, forgetful)
                    continue
            current = {
                a: acc
                for a in accounts_of(sub.command)
                if (acc := pending.get(a) or committed.get(a)) is not None
            }
            try:
                decided = decide(sub.command, current, now)
            except Rejection as exc:
                verdicts[index] = exc
                continue
            first_of[command_id] = index
            if unit is not None:
                unit.decided.append(command_id)
            for event in decided:
                account_id = event.account_id
                state = evolve(current.get(account_id), event)
                if unit is not None and account_id not in unit.before:
                    unit.before[account_id] = pending.get(account_id)
                pending[account_id] = current[account_id] = state
                events.append((event, partition_of(account_id)))
                authors.append(index)
                states.append(state)
        if unit is not None:
            unit.settle(decisions, pending, first_of)
        return decisions

    def _too_old(self, command: Command, partition: int) -> Rejection:
        """The refusal of a command that may have been applied and forgotten since; it depends
        on nothing but the log and the command, so every replica would refuse it alike."""
        made = command_id_time(command.command_id)
        horizon = millis_time(self._model.horizons[partition]).isoformat()
        when = f"made at {made.isoformat()}" if made is not None else "not a UUIDv7"
        return Rejection(
            RejectionKind.PRECONDITION,
            f"command_id {command.command_id!r} is too old to deduplicate: it was {when}, and "
            f"the server no longer remembers which commands made up to {horizon} were applied "
            f"(partition {partition}). If this is a retry, check whether the original was "
            "applied (ListTransactions shows each transaction's command_id); only if it was "
            "not, send the command again with a new command_id. If it is a new command, the "
            "client's clock is behind: check it",
        )


@dataclass(slots=True)
class _AtomicUnit:
    """An atomic span being decided: what to take back should one of its commands fail."""

    start: int
    stop: int
    first_event: int
    # Each account the span changed, as the pending state held it before (None: not pending).
    before: dict[str, Account | None] = field(default_factory=dict)
    # The ids of the span's commands that were decided (and so may be duplicated later on).
    decided: list[str] = field(default_factory=list)

    def settle(
        self, decisions: _Decisions, pending: dict[str, Account], first_of: dict[str, int]
    ) -> None:
        """Once the span is decided: if a command of it failed, take every other one back."""
        verdicts = decisions.verdicts
        span = range(self.start, self.stop)
        failed = next((i for i in span if isinstance(verdicts[i], BaseException)), None)
        if failed is None:
            return
        del decisions.events[self.first_event :]
        del decisions.authors[self.first_event :]
        del decisions.states[self.first_event :]
        for account_id, state in self.before.items():
            if state is None:
                pending.pop(account_id, None)
            else:
                pending[account_id] = state
        for command_id in self.decided:
            del first_of[command_id]
        why = NotApplied(
            f"not applied: command {failed - self.start} of the atomic batch failed (its result "
            "says why), so none of the batch's commands was applied"
        )
        aliases = decisions.aliases
        for index in span:
            # Decided here (None), or a duplicate of a command decided here: taken back. A
            # command applied by an earlier call (an Outcome) or by an earlier call of this
            # transaction (a duplicate from before the span) stays applied, answered as that;
            # a failed one keeps its own reason.
            if verdicts[index] is None and aliases.get(index, self.stop) >= self.start:
                aliases.pop(index, None)
                verdicts[index] = why


def _reused(command: Command) -> CommandIdReused:
    return CommandIdReused(
        f"command_id {command.command_id!r} was already used for a different command; "
        "a retry must repeat the original request exactly, a new command needs a new command_id"
    )


def _retried(known: Outcome, sub: _Submission) -> Outcome | CommandIdReused:
    """A command whose id has a recorded outcome: the same answer again, or a refusal.

    Events written before amounts were made canonical hold the fingerprint of the amount as
    sent: an exact retry of such a command still matches it."""
    if known.fingerprint == sub.fingerprint or known.fingerprint == literal_fingerprint(
        sub.command
    ):
        return known
    return _reused(sub.command)
