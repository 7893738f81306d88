"""The Batcher: decides a batch's commands in order, appends their events in one transaction,
folds them into the write model once committed, and answers one verdict per command.

Each command is decided against the committed state overlaid with what the batch's earlier
commands changed. Every verdict (a rejection too: it may rest on that pending state) holds only
if the transaction commits; if it aborts, every command of the batch gets the failure and the
pending state is dropped, so a retry is decided afresh (docs/design.md, decision 3). A command
whose id already has an outcome gets that outcome again, or a refusal if it is not the same
command (docs/design.md, decision 4).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from command_server.event_store import AppendFailed, Fenced
from command_server.shards import Shard
from command_server.write_model import Outcome, WriteModel
from command_server.writer.protocol import (
    BatchReply,
    CommandIdReused,
    NotServing,
    PackedCommand,
    WriterFailed,
    pack_verdict,
    unpack_command,
)
from ledger.domain.account import Account
from ledger.domain.commands import Command, accounts_of, fingerprint
from ledger.domain.decider import decide, evolve
from ledger.domain.rejection import Rejection
from ledger.events.records import Event

log = logging.getLogger(__name__)


class Appender(Protocol):
    """The part of the event store the batcher uses."""

    def append(self, events: Sequence[tuple[Event, int]]) -> list[int]: ...


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
        self._fenced: Fenced | None = None
        self.appended = 0
        """Events the last batch appended."""

    def commit(self, packed: list[PackedCommand]) -> BatchReply:
        batch = [_Submission(unpack_command(command)) for command in packed]
        if self._fenced is not None:
            return self._refuse_fenced(len(batch))
        decisions = self._decide(batch)
        verdicts, events = decisions.verdicts, decisions.events
        self.appended = 0
        if events:
            try:
                offsets = self._store.append(events)
            except Fenced as exc:
                self._fenced = exc
                return self._refuse_fenced(len(batch))
            except AppendFailed as exc:
                log.warning("batch of %d commands aborted: %s", len(batch), exc)
                return None, [pack_verdict(exc)] * len(batch)
            except Exception as exc:
                log.exception("unexpected failure appending a batch")
                failed = WriterFailed(f"appending the batch failed: {exc!r}")
                return None, [pack_verdict(failed)] * len(batch)
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
        return None, [pack_verdict(verdict) for verdict in verdicts]

    def _refuse_fenced(self, commands: int) -> BatchReply:
        refusal = NotServing(f"this shard was taken over: {self._fenced}")
        return str(self._fenced), [pack_verdict(refusal)] * commands

    def _decide(self, batch: list[_Submission]) -> _Decisions:
        now = self._clock()
        pending: dict[str, Account] = {}
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
            for event in decided:
                account_id = event.account_id
                state = evolve(current.get(account_id), event)
                pending[account_id] = current[account_id] = state
                events.append((event, partition_of(account_id)))
                authors.append(index)
                states.append(state)
        return decisions


def _reused(command: Command) -> CommandIdReused:
    return CommandIdReused(
        f"command_id {command.command_id!r} was already used for a different command; "
        "a retry must repeat the original request exactly, a new command needs a new command_id"
    )


def _retried(known: Outcome, sub: _Submission) -> Outcome | CommandIdReused:
    """A command whose id has a recorded outcome: the same answer again, or a refusal."""
    return known if known.fingerprint == sub.fingerprint else _reused(sub.command)
