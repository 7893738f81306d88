"""The write model: a fold of the owned partitions, plus the memory of recent command outcomes."""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field

from ledger.consistency import ConsistencyToken
from ledger.domain.account import Account
from ledger.domain.decider import evolve
from ledger.events.records import Event, TransferCredited


@dataclass(slots=True)
class Outcome:
    """What a successful command answered: kept so that a retry gets the very same answer."""

    fingerprint: str
    # The version the command left its (source) account at; 0 until the source's event is seen.
    version: int = 0
    positions: dict[int, int] = field(default_factory=dict)
    _token: str | None = None

    @property
    def token(self) -> str:
        # Encoded once: every answer to the command (and to its retries) carries the same token.
        if self._token is None:
            self._token = ConsistencyToken(self.positions).encode()
        return self._token

    def record(self, event: Event, partition: int, offset: int) -> None:
        # A transfer's credit lands on the destination; the response reports the source.
        if not isinstance(event, TransferCredited):
            self.version = event.version
        self.positions[partition] = max(offset, self.positions.get(partition, -1))
        self._token = None


class WriteModel:
    """Current accounts and recent outcomes; only the batcher changes it, after a commit."""

    def __init__(self, dedupe_window: int) -> None:
        self.accounts: dict[str, Account] = {}
        self._outcomes: OrderedDict[str, Outcome] = OrderedDict()
        self._dedupe_window = dedupe_window
        self.events_applied = 0

    def apply(self, event: Event, partition: int, offset: int) -> None:
        """Fold one committed event in; raises InconsistentEvent if the log contradicts itself."""
        self.apply_decided(
            event, evolve(self.accounts.get(event.account_id), event), partition, offset
        )

    def apply_decided(self, event: Event, state: Account, partition: int, offset: int) -> None:
        """Record a committed event whose resulting account `state` is already known (the batcher
        evolved it while deciding, against this very model plus the batch's earlier events)."""
        self.accounts[event.account_id] = state
        outcome = self._outcomes.get(event.command_id)
        if outcome is None:
            outcome = Outcome(event.command_fingerprint)
            self._outcomes[event.command_id] = outcome
            if len(self._outcomes) > self._dedupe_window:
                self._outcomes.popitem(last=False)
        outcome.record(event, partition, offset)
        self.events_applied += 1

    def outcome(self, command_id: str) -> Outcome | None:
        return self._outcomes.get(command_id)
