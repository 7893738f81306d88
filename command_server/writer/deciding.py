"""Deciding a batch: each command in order, against the committed state overlaid with what the
batch's earlier commands changed (and, when decided ahead, with an open transaction's pending
state).

A command whose id already has an outcome gets that outcome again, or a refusal if it is not the
same command; one whose id is no longer remembered but is not newer than what its partitions
forgot is refused as too old to deduplicate (docs/design.md, decision 4).

An atomic span of the batch (one ExecuteBatch with `atomic`) is decided like the rest, each
command seeing the earlier ones' effects; if any of its commands fails, the span's events and
pending state are taken back, and its other commands are answered `NotApplied`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

from command_server.saga_messages import encode, message_key
from command_server.shards import Shard
from command_server.write_model import Outcome, WriteModel
from command_server.writer.decisions import AtomicUnit, Decisions
from command_server.writer.protocol import CommandIdReused
from ledger.command_ids import command_id_millis, command_id_time, millis_time
from ledger.domain.account import Account
from ledger.domain.commands import (
    CloseAccount,
    Command,
    Transfer,
    accounts_of,
    fingerprint,
    literal_fingerprint,
)
from ledger.domain.decider import event_time, evolve
from ledger.domain.movements import decide_checked
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.domain.saga import require_nothing_in_flight, send
from ledger.events.records import Event


@dataclass(slots=True)
class Submission:
    """A command of the batch being decided."""

    command: Command
    # Computed only when needed (a retry or a duplicate in the batch): `decide` hashes the
    # command itself for its events, so the common path pays for one fingerprint, not two.
    _fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.command)
        return self._fingerprint


class Decider:
    """Decides batches against the write model; the batcher appends what it decides."""

    def __init__(
        self,
        model: WriteModel,
        shard: Shard,
        clock: Callable[[], datetime],
        transfers_topic: str | None,
    ) -> None:
        self._model = model
        self._shard = shard
        self._clock = clock
        self._transfers_topic = transfers_topic

    def decide(
        self,
        batch: list[Submission],
        atomic: dict[int, int],
        pending: dict[str, Account] | None = None,
    ) -> Decisions:
        """Decide `batch` in order against the committed state overlaid with `pending` (the
        states a transaction not yet committed leaves its accounts in; it is taken over and
        extended) and with what the batch's earlier commands change."""
        now = self._clock()
        at = event_time(now)  # every event of the batch's movements
        pending = {} if pending is None else pending
        unit: AtomicUnit | None = None
        first_of: dict[str, int] = {}
        decisions = Decisions([None] * len(batch), [], [], [], {})
        verdicts, events, authors, states, aliases = (
            decisions.verdicts,
            decisions.events,
            decisions.authors,
            decisions.states,
            decisions.aliases,
        )
        model = self._model
        committed, outcome = model.accounts, model.outcome
        partition_of = self._shard.partition_of
        sending: dict[str, int] = {}
        """Per account: the transfers to other shards this batch decided (in flight too)."""
        for index, sub in enumerate(batch):
            if unit is not None and index == unit.stop:
                unit.settle(decisions, pending, first_of)
                unit = None
            if index in atomic:
                unit = AtomicUnit(index, atomic[index], len(events))
            command = sub.command
            command_id = command.command_id
            known = outcome(command_id)
            if known is not None:
                verdicts[index] = _retried(known, sub)
                continue
            if command_id in first_of:
                original = first_of[command_id]
                if batch[original].fingerprint == sub.fingerprint:
                    aliases[index] = original
                else:
                    verdicts[index] = _reused(command)
                continue
            touched = accounts_of(command)
            if model.horizons:
                partitions = [partition_of(a) for a in touched]
                forgetful = model.forgotten(command_id, partitions)
                if forgetful is not None:
                    verdicts[index] = self._too_old(command, forgetful)
                    continue
            current = {}  # a loop, not a comprehension: Python 3.11 calls a function for one
            for account_id in touched:
                if (account := pending.get(account_id) or committed.get(account_id)) is not None:
                    current[account_id] = account
            try:
                decided = self._decided(command, current, now, at, decisions, sending)
            except Rejection as exc:
                verdicts[index] = exc
                continue
            first_of[command_id] = index
            if unit is not None:
                unit.decided.append(command_id)
            for event, state in decided:
                account_id = event.account_id
                if unit is not None and account_id not in unit.before:
                    unit.before[account_id] = pending.get(account_id)
                pending[account_id] = state
                events.append((event, partition_of(account_id)))
                authors.append(index)
                states.append(state)
        if unit is not None:
            unit.settle(decisions, pending, first_of)
        decisions.decided = first_of
        return decisions

    def holds_after_forgetting(self, batch: list[Submission], decisions: Decisions) -> bool:
        """Whether `decisions`, made before the model forgot outcomes, are what deciding `batch`
        now would give (a batch decided ahead: Batcher.open_ahead). Forgetting only removes
        outcomes and moves horizons on, and only two reads of `decide` see it: a command
        answered from memory (or refused as reusing an id) must still be remembered, and a
        command decided afresh must still be newer than the horizons of the partitions it
        touches, all of them here, which is stricter. Otherwise it is decided again: so it is
        for the few batches that hold a retry of a command just forgotten, or an id older
        than the dedupe window (ids without a time among them)."""
        model = self._model
        horizon = max(model.horizons.values(), default=None)
        outcome = model.outcome
        for sub, verdict in zip(batch, decisions.verdicts, strict=True):
            command_id = sub.command.command_id
            if horizon is not None:
                millis = command_id_millis(command_id)
                if millis is None or millis <= horizon:
                    return False
            if isinstance(verdict, Outcome | CommandIdReused) and outcome(command_id) is None:
                return False
        return True

    def _decided(
        self,
        command: Command,
        current: dict[str, Account],
        now: datetime,
        at: datetime,
        decisions: Decisions,
        sending: dict[str, int],
    ) -> list[tuple[Event, Account]]:
        """What `decide` says, each event with the state it leaves its account in, but for the
        saga's part (decision 13): a transfer to an account of another shard is sent (with a
        request for its credit, in the same transaction), and an account with money in flight
        cannot close."""
        if isinstance(command, Transfer) and self._transfers_topic is not None:
            partition = self._shard.partition_of(command.to_account_id)
            if not self._shard.owns(partition):
                source = current.get(command.from_account_id)
                sent, request = send(command, source, now)
                message = (self._transfers_topic, message_key(request), encode(request), partition)
                decisions.messages.append((len(decisions.events), message))
                sending[sent.account_id] = sending.get(sent.account_id, 0) + 1
                return [(sent, evolve(source, sent))]
        if isinstance(command, CloseAccount) and self._transfers_topic is not None:
            account = command.account_id
            in_flight = self._model.transfers.of_account(account) + sending.get(account, 0)
            require_nothing_in_flight(account, in_flight)
        # Fields not checked again: every command reaches the writer from the gRPC process,
        # which refuses any that `require_fields` refuses (docs/design.md, "Every field is
        # checked at the edge").
        return decide_checked(command, current, now, at)

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


def _reused(command: Command) -> CommandIdReused:
    return CommandIdReused(
        f"command_id {command.command_id!r} was already used for a different command; "
        "a retry must repeat the original request exactly, a new command needs a new command_id"
    )


def _retried(known: Outcome, sub: Submission) -> Outcome | CommandIdReused:
    """A command whose id has a recorded outcome: the same answer again, or a refusal.

    Events written before amounts were made canonical hold the fingerprint of the amount as
    sent: an exact retry of such a command still matches it."""
    if known.fingerprint == sub.fingerprint or known.fingerprint == literal_fingerprint(
        sub.command
    ):
        return known
    return _reused(sub.command)
