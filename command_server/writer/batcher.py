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
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

from command_server.event_store import (
    AppendFailed,
    AppendUnsettled,
    DeliveryUnconfirmed,
    Fenced,
    UnreadableLog,
)
from command_server.saga_messages import encode, message_key
from command_server.shards import Shard
from command_server.transactions import Consumed, Message_
from command_server.write_model import Outcome, WriteModel
from command_server.writer.decisions import AtomicUnit, Decisions, WriteFailed
from command_server.writer.protocol import (
    BROKEN,
    COMMITTING,
    FENCED,
    STALLED,
    UNCHANGED,
    AtomicSpan,
    BatchReply,
    CommandIdReused,
    NotServing,
    PackedCommand,
    WriterFailed,
    pack_verdict,
    unpack_command,
)
from ledger.command_ids import command_id_time, millis_time
from ledger.domain.account import Account
from ledger.domain.commands import (
    CloseAccount,
    Command,
    Transfer,
    accounts_of,
    fingerprint,
    literal_fingerprint,
)
from ledger.domain.decider import InconsistentEvent, event_time, evolve
from ledger.domain.movements import decide_checked
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.domain.saga import require_nothing_in_flight, send
from ledger.events.records import Event

log = logging.getLogger(__name__)

CATCH_UP_TIMEOUT = 10.0
"""Seconds a read of the log after an unsettled transaction may take before it is retried."""


class Appender(Protocol):
    """The part of the event store the batcher uses."""

    def append(
        self,
        events: Sequence[tuple[Event, int]],
        messages: Sequence[Message_] = (),
        consumed: Consumed | None = None,
    ) -> list[int]: ...

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


class Batcher:
    """Decides and commits one batch at a time; runs in the writer process."""

    def __init__(
        self,
        model: WriteModel,
        store: Appender,
        shard: Shard,
        clock: Callable[[], datetime] = utc_now,
        transfers_topic: str | None = None,
    ) -> None:
        self._model = model
        self._transfers_topic = transfers_topic
        """Where credit requests go; None with one shard (every transfer stays on it)."""
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
            offsets = self.write(events, [m for _, m in decisions.messages])
            if isinstance(offsets, WriteFailed):
                return offsets.health, offsets.why, [pack_verdict(offsets.error)] * len(batch)
            health = COMMITTING
            self.appended = len(events)
            model = self._model
            forgets = model.forgets
            outcomes = model.apply_batch(events, decisions.states, offsets)
            if model.forgets == forgets:
                # A command's events share its Outcome: the last one's holds every position.
                for index, outcome in zip(decisions.authors, outcomes, strict=True):
                    verdicts[index] = outcome
            else:
                # Folding forgot old outcomes, maybe some of this batch's: as `outcome` says.
                for index in set(decisions.authors):
                    verdicts[index] = model.outcome(batch[index].command.command_id)
        for duplicate, original in decisions.aliases.items():
            verdicts[duplicate] = verdicts[original]
        return health, why, [pack_verdict(verdict) for verdict in verdicts]

    def write(
        self,
        events: Sequence[tuple[Event, int]],
        messages: Sequence[Message_] = (),
        consumed: Consumed | None = None,
    ) -> list[int] | WriteFailed:
        """Append in one transaction: each event's offset, or what went wrong (for the batch's
        callers, and for the writer's health)."""
        try:
            if messages or consumed is not None:
                return self._store.append(events, messages, consumed)
            return self._store.append(events)
        except Fenced as exc:
            self._halted = FENCED, str(exc)
        except DeliveryUnconfirmed as exc:
            log.critical("the writer stops: %s", exc)
            self._halted = BROKEN, str(exc)
        except AppendFailed as exc:
            log.warning("transaction of %d events not committed: %s", len(events), exc)
            if isinstance(exc, AppendUnsettled):
                # The failed transaction may have committed: learn it from the log before
                # deciding anything again.
                self._behind = str(exc)
                self._catch_up()
            if self._halted is None:
                return WriteFailed(STALLED, str(exc), exc)
        except Exception as exc:
            log.exception("unexpected failure appending a batch")
            return WriteFailed(UNCHANGED, "", WriterFailed(f"appending the batch failed: {exc!r}"))
        health, why = self._halted
        return WriteFailed(health, why, NotServing(f"the command server stops: {why}"))

    def ready(self) -> str | None:
        """None if the model may decide now; otherwise why not (halted, or behind the log)."""
        if self._halted is not None:
            return self._halted[1]
        return self._catch_up() if self._behind is not None else None

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

    def _decide(self, batch: list[_Submission], atomic: dict[int, int]) -> Decisions:
        now = self._clock()
        at = event_time(now)  # every event of the batch's movements
        pending: dict[str, Account] = {}
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
        return decisions

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


def _retried(known: Outcome, sub: _Submission) -> Outcome | CommandIdReused:
    """A command whose id has a recorded outcome: the same answer again, or a refusal.

    Events written before amounts were made canonical hold the fingerprint of the amount as
    sent: an exact retry of such a command still matches it."""
    if known.fingerprint == sub.fingerprint or known.fingerprint == literal_fingerprint(
        sub.command
    ):
        return known
    return _reused(sub.command)
