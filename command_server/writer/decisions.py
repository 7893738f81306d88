"""What deciding one batch produces, and how an atomic span of it is taken back."""

from __future__ import annotations

from dataclasses import dataclass, field

from command_server.write_model import Outcome
from command_server.writer.protocol import NotApplied
from ledger.domain.account import Account
from ledger.events.records import Event

Verdict = Outcome | BaseException | None


@dataclass(slots=True)
class Decisions:
    verdicts: list[Verdict]
    # Events to append, each with its partition, and the index of the submission behind it.
    events: list[tuple[Event, int]]
    authors: list[int]
    # The state each event leaves its account in, already computed while deciding.
    states: list[Account]
    # A duplicate inside the batch (index -> index of its original) shares the original's verdict.
    aliases: dict[int, int]
    # Messages to the transfers topic (credit requests), each with the number of events
    # decided before it: taking an atomic span back drops the messages of its events too.
    messages: list[tuple[int, tuple[str, str, bytes, int]]] = field(default_factory=list)
    # The id of each command that decided events, with its index.
    decided: dict[str, int] = field(default_factory=dict)


@dataclass(slots=True)
class AtomicUnit:
    """An atomic span being decided: what to take back should one of its commands fail."""

    start: int
    stop: int
    first_event: int
    # Each account the span changed, as the pending state held it before (None: not pending).
    before: dict[str, Account | None] = field(default_factory=dict)
    # The ids of the span's commands that were decided (and so may be duplicated later on).
    decided: list[str] = field(default_factory=list)

    def settle(
        self, decisions: Decisions, pending: dict[str, Account], first_of: dict[str, int]
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
        decisions.messages[:] = [m for m in decisions.messages if m[0] < self.first_event]
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


@dataclass(frozen=True, slots=True)
class WriteFailed:
    """A transaction that did not commit: what the writer's health becomes, why, and the
    failure every caller of the batch is answered with."""

    health: int
    why: str
    error: BaseException
