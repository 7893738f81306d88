"""The Batcher: decides a batch's commands in order (deciding.py), appends their events in one
transaction, folds them into the write model once committed, and answers one verdict per command.

Every verdict (a rejection too: it may rest on the batch's pending state) holds only if the
transaction commits; if it aborts, every command of the batch gets the failure and the pending
state is dropped, so a retry is decided afresh (docs/design.md, decision 3).

While one batch's transaction is open, the next may be decided against its pending state
(`decide_ahead`); it is produced only once that transaction committed, and decided again where
the answers could differ from deciding it then (design.md, decision 3).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol, TypeAlias, TypeVar

from command_server.event_store import (
    AppendFailed,
    AppendUnsettled,
    DeliveryUnconfirmed,
    Fenced,
    UnreadableLog,
)
from command_server.shards import Shard
from command_server.transactions import Consumed, Message_
from command_server.write_model import Outcome, WriteModel
from command_server.writer.deciding import Decider, Submission
from command_server.writer.decisions import Decisions, WriteFailed
from command_server.writer.protocol import (
    BROKEN,
    COMMITTING,
    FENCED,
    STALLED,
    UNCHANGED,
    AtomicSpan,
    BatchReply,
    NotServing,
    PackedCommand,
    WriterFailed,
    pack_verdict,
    unpack_command,
)
from ledger.domain.decider import InconsistentEvent
from ledger.events.records import Event

log = logging.getLogger(__name__)

CATCH_UP_TIMEOUT = 10.0
"""Seconds a read of the log after an unsettled transaction may take before it is retried."""

_T = TypeVar("_T")


class Appender(Protocol):
    """The part of the event store the batcher uses."""

    def append(
        self,
        events: Sequence[tuple[Event, int]],
        messages: Sequence[Message_] = (),
        consumed: Consumed | None = None,
    ) -> list[int]: ...

    def encode(self, events: Sequence[tuple[Event, int]]) -> Any:
        """The events as the records `begin_append` produces: CPU only, no I/O."""
        ...

    def begin_append(self, encoded: Any, messages: Sequence[Message_] = ()) -> object:
        """`append` up to its commit: the records produced, the transaction left open."""
        ...

    def end_append(self, appending: Any) -> list[int]:
        """Commit what `begin_append` left open; each event's offset."""
        ...

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
class Opened:
    """A batch decided, its events produced in a transaction not committed yet."""

    batch: list[Submission]
    decisions: Decisions
    appending: object
    committed: bool = False


@dataclass(frozen=True, slots=True)
class Ahead:
    """The next batch, decided while `after`'s transaction was open."""

    batch: list[Submission]
    decisions: Decisions
    after: Opened
    encoded: object | None
    """Its events as records, encoded while `after` committed (None: encode them when
    producing)."""
    forgets: int
    """The model's `forgets` then: after a fold that forgot outcomes, the decisions hold only
    if none of them read what was forgotten (`Decider.holds_after_forgetting`)."""


Open: TypeAlias = Opened | BatchReply
"""What opening a batch gives: its open transaction, or its reply when there is none."""
Settled: TypeAlias = Decisions | BatchReply
"""What settling an open transaction gives: the batch's decisions with their verdicts final
(committed), or its reply when the transaction failed."""


class Batcher:
    """Decides and commits one batch at a time; runs in the writer process. The next batch
    may be decided while one's transaction is open, and is produced once it committed."""

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
        self.decider = Decider(model, shard, clock, transfers_topic)
        self._halted: tuple[int, str] | None = None
        """(FENCED or BROKEN, why): no batch is taken any more."""
        self._behind: str | None = None
        """Why the model may lack events the log holds (an unsettled transaction), if it may."""
        self.appended = 0
        """Events the last batch appended (or a catch-up folded in)."""

    def commit(self, packed: list[PackedCommand], atomic: Sequence[AtomicSpan] = ()) -> BatchReply:
        """Decide, append and answer one batch."""
        opened = self.open(packed, atomic)
        return opened if isinstance(opened, tuple) else self.close(opened)

    def open(self, packed: list[PackedCommand], atomic: Sequence[AtomicSpan] = ()) -> Open:
        """Decide the batch and produce its events in a transaction left open (`close` commits
        it); or, if it has nothing to append or cannot be taken, its reply at once."""
        batch = [Submission(unpack_command(command)) for command in packed]
        if self._halted is not None:
            return self._refuse(len(batch))
        if self._behind is not None:
            why = self._catch_up()
            if why is not None:
                refusal = NotServing(f"the event store cannot take writes now ({why}); retry")
                return STALLED, why, [pack_verdict(refusal)] * len(batch)
        return self._produce(batch, self.decider.decide(batch, dict(atomic)))

    def decide_ahead(
        self, packed: list[PackedCommand], atomic: Sequence[AtomicSpan], after: Opened
    ) -> Ahead | None:
        """Decide the next batch while `after`'s records are on their way, as if `after` had
        committed: against its pending state (docs/design.md, decision 3). None where that
        could answer otherwise than deciding after it: a command of `after` sent again (its
        outcome is not known before the commit), or a saga (its steps run between batches)."""
        if self._transfers_topic is not None:
            return None
        batch = [Submission(unpack_command(command)) for command in packed]
        decided = after.decisions.decided
        for sub in batch:
            if sub.command.command_id in decided:
                return None
        # What `after` changed (the model already holds everything before it): the state its
        # last event left each account in.
        events, states = after.decisions.events, after.decisions.states
        pending = {
            event.account_id: state for (event, _), state in zip(events, states, strict=True)
        }
        decisions = self.decider.decide(batch, dict(atomic), pending)
        return Ahead(batch, decisions, after, self._encoded(decisions), self._model.forgets)

    def _encoded(self, decisions: Decisions) -> object | None:
        """The decided events as records, or None to leave the encoding (and any failure of it,
        reported as the append's) to `_produce`."""
        if not decisions.events:
            return None
        try:
            encoded: object = self._store.encode(decisions.events)
        except Exception:
            return None
        return encoded

    def open_ahead(self, ahead: Ahead) -> Open | None:
        """`open` with what was decided ahead; None if it no longer holds: the transaction it
        was decided after did not commit, or its fold forgot outcomes the decisions read
        (the batch must then be decided again, by `open`)."""
        if not ahead.after.committed:
            return None
        if self._model.forgets != ahead.forgets and not self.decider.holds_after_forgetting(
            ahead.batch, ahead.decisions
        ):
            return None
        if self._halted is not None or self._behind is not None:
            return None
        return self._produce(ahead.batch, ahead.decisions, ahead.encoded)

    def close(self, opened: Opened) -> BatchReply:
        """Commit the open transaction, fold its events in and answer its batch."""
        return self.reply(self.settle(opened))

    def settle(self, opened: Opened) -> Settled:
        """Commit the open transaction and fold its events in: its batch's verdicts are then
        final, and `reply` packs them. The writer produces the next batch in between, so that
        the packing and sending overlap its transaction rather than hold it back."""
        batch, decisions = opened.batch, opened.decisions
        offsets = self._guarded(len(decisions.events), self._store.end_append, opened.appending)
        if isinstance(offsets, WriteFailed):
            return offsets.health, offsets.why, [pack_verdict(offsets.error)] * len(batch)
        opened.committed = True
        self.appended = len(decisions.events)
        verdicts, model = decisions.verdicts, self._model
        forgets = model.forgets
        outcomes = model.apply_batch(decisions.events, decisions.states, offsets)
        if model.forgets == forgets:
            # A command's events share its Outcome: the last one's holds every position.
            for index, outcome in zip(decisions.authors, outcomes, strict=True):
                verdicts[index] = outcome
        else:
            # Folding forgot old outcomes, maybe some of this batch's (a batch with more
            # commands on a partition than its share of the window): as `outcome` says, or, if
            # already forgotten, as the fold made it: every position of the command's events.
            made: dict[int, Outcome] = {}
            for index, outcome in zip(decisions.authors, outcomes, strict=True):
                earlier = made.get(index)
                if earlier is not None and earlier is not outcome:
                    outcome = Outcome(
                        outcome.fingerprint,
                        max(earlier.version, outcome.version),
                        {**earlier.positions, **outcome.positions},
                    )
                made[index] = outcome
            for index, outcome in made.items():
                verdicts[index] = model.outcome(batch[index].command.command_id) or outcome
        return decisions

    def reply(self, settled: Settled) -> BatchReply:
        """The reply of a batch `settle` committed (or failed to)."""
        if isinstance(settled, tuple):
            return settled
        return self._answer(settled, COMMITTING)

    def _produce(
        self, batch: list[Submission], decisions: Decisions, encoded: object | None = None
    ) -> Open:
        self.appended = 0
        if not decisions.events:
            return self._answer(decisions, UNCHANGED)
        messages = [m for _, m in decisions.messages]
        appending = self._guarded(
            len(decisions.events), self._begin_append, decisions.events, messages, encoded
        )
        if isinstance(appending, WriteFailed):
            return appending.health, appending.why, [pack_verdict(appending.error)] * len(batch)
        return Opened(batch, decisions, appending)

    def _begin_append(
        self, events: Sequence[tuple[Event, int]], messages: list[Message_], encoded: object | None
    ) -> object:
        if encoded is None:
            encoded = self._store.encode(events)
        return self._store.begin_append(encoded, messages)

    @staticmethod
    def _answer(decisions: Decisions, health: int) -> BatchReply:
        verdicts = decisions.verdicts
        for duplicate, original in decisions.aliases.items():
            verdicts[duplicate] = verdicts[original]
        return health, "", [pack_verdict(verdict) for verdict in verdicts]

    def write(
        self,
        events: Sequence[tuple[Event, int]],
        messages: Sequence[Message_] = (),
        consumed: Consumed | None = None,
    ) -> list[int] | WriteFailed:
        """Append in one transaction: each event's offset, or what went wrong (for the batch's
        callers, and for the writer's health)."""
        if messages or consumed is not None:
            return self._guarded(len(events), self._store.append, events, messages, consumed)
        return self._guarded(len(events), self._store.append, events)

    def _guarded(self, events: int, step: Callable[..., _T], *args: Any) -> _T | WriteFailed:
        """`step` of a transaction of `events` events, or what its failure means."""
        try:
            return step(*args)
        except Fenced as exc:
            self._halted = FENCED, str(exc)
        except DeliveryUnconfirmed as exc:
            log.critical("the writer stops: %s", exc)
            self._halted = BROKEN, str(exc)
        except AppendFailed as exc:
            log.warning("transaction of %d events not committed: %s", events, exc)
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
