"""The write model: a fold of the owned partitions, plus the memory of recent command outcomes."""

from __future__ import annotations

import dataclasses
from array import array
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from itertools import repeat
from operator import attrgetter

from command_server.outcome_log import (
    CHUNK_ENTRIES,
    OutcomeColumns,
    OutcomeLog,
)
from command_server.transfers_in_flight import REFUNDED, TransfersInFlight
from ledger.command_ids import command_id_millis, latest_command_id_millis
from ledger.consistency import ConsistencyToken, encode_positions
from ledger.domain.account import Account
from ledger.domain.decider import evolve
from ledger.events import records
from ledger.events.records import Event, TransferCredited, TransferRefunded, TransferSent


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
            self._token = encode_positions(self.positions)
        return self._token

    def record(self, version: int, partition: int, offset: int) -> None:
        # A transfer's credit (version 0 here) lands on the destination; the answer reports the
        # source.
        self.version = max(self.version, version)
        self.positions[partition] = max(offset, self.positions.get(partition, -1))
        self._token = None


def source_version(event: Event) -> int:
    """The version an event contributes to its command's answer: 0 for a transfer's credit,
    and for the refund of a cross-shard transfer (the answer is the debit's)."""
    kind = type(event)
    if kind in _OWN_VERSION:
        return event.version
    return 0 if isinstance(event, TransferCredited | TransferRefunded) else event.version


_OWN_VERSION = frozenset(
    {records.AccountOpened, records.MoneyDeposited, records.MoneyWithdrawn}
    | {records.TransferDebited, TransferSent, records.AccountClosed, records.OwnerErased}
)
"""Event types whose version is their command's (`source_version` without isinstance)."""
_NOTHING_IN_FLIGHT = frozenset(
    {records.AccountOpened, records.MoneyDeposited, records.MoneyWithdrawn}
    | {records.TransferDebited, TransferCredited, records.AccountClosed, records.OwnerErased}
)
"""Event types that leave the transfers in flight alone (any other is checked with isinstance)."""
_OUTCOMES_ONLY = frozenset((Outcome,))
_VERSION = attrgetter("version")
_TOKEN = attrgetter("token")
_ENCODED_TOKEN = attrgetter("_token")

# An outcome restored from a snapshot stays packed in its partition's log until it is asked for;
# the index then holds (partition, absolute index) instead of an Outcome.
IndexEntry = Outcome | tuple[int, int]


class WriteModel:
    """Current accounts and recent outcomes; only the batcher changes it, after a commit.

    The dedupe window is kept per partition, because snapshots are: each owned partition
    remembers at least the outcomes of its last `dedupe_window / partitions owned` events, and
    forgets older ones `chunk_entries` at a time.

    Forgetting moves the partition's horizon: the latest id-time (command_id_millis) among every
    command it forgot; ids that are not UUIDv7 (from before ids were) count for nothing.
    Invariant: every applied command whose id-time is after the horizons of all the partitions
    it touches is remembered. So a command not remembered whose id-time is at or before one of
    those horizons may have been applied, and is refused rather than decided again
    (`forgotten`). The horizon is a function of the log (and the window), so a replay rebuilds
    it; snapshots carry it; it belongs to its partition, so it moves with it between shards.
    """

    def __init__(
        self,
        dedupe_window: int,
        partitions: list[int] | None = None,
        chunk_entries: int = CHUNK_ENTRIES,
    ) -> None:
        self.accounts: dict[str, Account] = {}
        self._index: dict[str, IndexEntry] = {}
        self.logs: dict[int, OutcomeLog] = {p: OutcomeLog() for p in partitions or []}
        self.account_ids: dict[int, set[str]] = {p: set() for p in partitions or []}
        self.positions: dict[int, int] = {}
        """The offset of the last event folded in, per partition."""
        self.horizons: dict[int, int] = {}
        """Per partition that forgot a UUIDv7 command: the latest id-time it forgot (ms)."""
        self.chunk_entries = chunk_entries
        self._window = -(-dedupe_window // max(1, len(self.logs)))
        self.events_applied = 0
        self.forgets = 0
        """How many times a partition forgot its oldest outcomes."""
        self.transfers = TransfersInFlight()
        """Cross-shard transfers debited here whose money is in flight (decision 13)."""
        self.saga_positions: dict[int, int] = {}
        """Per partition of the transfers topic: the offset of the next message to process."""
        self.recorded_again: list[str] | None = None
        """Once snapshots set it to a list: the commands that got another event since they took
        it, whose earlier entries' answers have changed (captured_outcomes.py)."""
        self.changed_accounts: defaultdict[int, set[str]] | None = None
        """Once snapshots take them (`take_changed_accounts`), per partition: the accounts
        folded into since they last did, so that a snapshot looks at those rather than at every
        account (a set per partition, bounded by the partition's accounts)."""

    def apply(self, event: Event, partition: int, offset: int) -> None:
        """Fold one committed event in; raises InconsistentEvent if the log contradicts itself."""
        self.apply_decided(
            event, evolve(self.accounts.get(event.account_id), event), partition, offset
        )

    def apply_decided(self, event: Event, state: Account, partition: int, offset: int) -> Outcome:
        """Record a committed event whose resulting account `state` is already known (the batcher
        evolved it while deciding, against this very model plus the batch's earlier events);
        returns its command's outcome as it stands now (`apply_batch`)."""
        return self.apply_batch(((event, partition),), (state,), (offset,))[0]

    def apply_batch(
        self,
        events: Sequence[tuple[Event, int]],
        states: Sequence[Account],
        offsets: Sequence[int],
    ) -> list[Outcome]:
        """`apply_decided` for each (event, partition) in order, with its state and offset:
        for each, its command's outcome as it stood then (the command's later events in the
        batch add to the same one). Once `forgets` has moved, `outcome` may no longer know it."""
        accounts, positions, logs, index = self.accounts, self.positions, self.logs, self._index
        changed, again = self.changed_accounts, self.recorded_again
        limit = self._window + self.chunk_entries
        outcomes: list[Outcome] = []
        add = outcomes.append
        try:
            for (event, partition), state, offset in zip(events, states, offsets, strict=True):
                account_id = event.account_id
                if account_id not in accounts:
                    self._partition_accounts(partition).add(account_id)
                if state.owner:
                    # Deciding never needs the owner, and what this model holds goes into
                    # snapshots: it keeps none (docs/design.md, decision 14).
                    state = dataclasses.replace(state, owner="")
                accounts[account_id] = state
                if changed is not None:
                    changed[partition].add(account_id)
                positions[partition] = offset
                kind = type(event)
                if kind not in _NOTHING_IN_FLIGHT:
                    self._track_transfer(event)
                command_id = event.command_id
                log = logs.get(partition)
                if log is None:
                    log = self._log(partition)
                entry = index.get(command_id)
                if entry is None:
                    # What `Outcome.record` would make of a fresh outcome, made at once.
                    version = event.version if kind in _OWN_VERSION else source_version(event)
                    outcome = index[command_id] = Outcome(
                        event.command_fingerprint, max(version, 0), {partition: offset}
                    )
                else:
                    outcome = entry if type(entry) is Outcome else self._restored(command_id)
                    outcome.record(source_version(event), partition, offset)
                    if again is not None:
                        again.append(command_id)
                log.append(command_id, event.command_fingerprint, offset, outcome)
                add(outcome)
                if len(log) >= limit:
                    self.forgets += 1
                    self._forget_oldest(partition, log)
        finally:
            self.events_applied += len(outcomes)
        return outcomes

    def _track_transfer(self, event: Event) -> None:
        if isinstance(event, TransferSent):
            self.transfers.add(event)
        elif isinstance(event, TransferRefunded):
            self.transfers.settle(event.transfer_id, REFUNDED, event.reason)

    def _restored(self, command_id: str) -> Outcome:
        outcome = self.outcome(command_id)
        assert outcome is not None  # indexed, so restored if not already an Outcome
        return outcome

    def outcome(self, command_id: str) -> Outcome | None:
        entry = self._index.get(command_id)
        if entry is None or isinstance(entry, Outcome):
            return entry
        partition, index = entry
        log = self.logs[partition]
        version, token = log.answer(index)
        positions = dict(ConsistencyToken.decode(token).positions)
        outcome = Outcome(log.fingerprint(index), version, positions, token)
        self._index[command_id] = outcome
        return outcome

    def forgotten(self, command_id: str, partitions: Iterable[int]) -> int | None:
        """For a command not remembered: a partition among `partitions` whose horizon is at or
        after the id's time (the command may have been applied, and forgotten), or None.
        An id without a time (not a UUIDv7) counts as older than any horizon."""
        horizons = self.horizons
        if not horizons:
            return None
        millis = command_id_millis(command_id)
        for partition in partitions:
            horizon = horizons.get(partition)
            if horizon is not None and (millis is None or millis <= horizon):
                return partition
        return None

    def chunk(self, partition: int, first: int, end: int) -> OutcomeColumns:
        """Entries [first, end) of a partition's log, each with its command's answer."""
        log = self.logs[partition]
        span = log.span(first, end)
        entries = self.entries(log.command_ids(span.start, span.stop))
        return log.columns(span, *self.answers(entries))

    def entries(self, command_ids: list[str]) -> list[IndexEntry | None]:
        """What the outcome index holds for each of `command_ids` (None: forgotten)."""
        return list(map(self._index.get, command_ids))

    def answers(self, entries: list[IndexEntry | None]) -> tuple[array[int], list[str]]:
        """The version and token columns answering `entries` (from `entries`)."""
        if _OUTCOMES_ONLY.issuperset(map(type, entries)):
            # Every entry's command answered since the start (a snapshot's usual case): the
            # answers taken column-wise, without a Python step per entry.
            tokens = list(map(_ENCODED_TOKEN, entries))
            if None in tokens:
                # Some not encoded yet (every answered command's is): the property encodes them.
                tokens = list(map(_TOKEN, entries))
            return array("q", list(map(_VERSION, entries))), tokens
        versions, tokens = array("q"), []
        for entry in entries:
            if isinstance(entry, Outcome):
                version, token = entry.version, entry.token
            elif entry is not None:
                # Restored and never asked for: its answer is still packed where it came from.
                version, token = self.logs[entry[0]].answer(entry[1])
            else:
                # A transfer whose other event was forgotten in its partition: forgotten here too.
                version, token = 0, ""
            versions.append(version)
            tokens.append(token)
        return versions, tokens

    def take_changed_accounts(self) -> dict[int, set[str]]:
        """The accounts folded into since the last call, per partition (none at the first,
        which starts keeping them)."""
        taken, self.changed_accounts = self.changed_accounts, defaultdict(set)
        return {} if taken is None else taken

    def restore(
        self,
        partition: int,
        accounts: list[Account],
        outcomes: list[OutcomeColumns],
        offset: int,
        horizon: int | None,
    ) -> None:
        """Take one partition's state from a snapshot that covers it up to `offset`."""
        ids = self._partition_accounts(partition)
        for account in accounts:
            self.accounts[account.account_id] = account
            ids.add(account.account_id)
        log = self.logs[partition] = OutcomeLog(outcomes[0].first if outcomes else 0)
        for columns in outcomes:
            log.extend(columns)
            first, count = columns.first, len(columns)
            # Every entry carries its command's whole answer, so the two events of a transfer
            # index the same answer and either may stand for it.
            places = zip(repeat(partition, count), range(first, first + count), strict=True)
            entries: Iterable[tuple[str, IndexEntry]] = zip(
                columns.command_ids, places, strict=True
            )
            if "" in columns.tokens:
                # Forgotten by the time the chunk was written: stays forgotten.
                tokens = columns.tokens
                entries = (
                    (command_id, place)
                    for command_id, place, token in zip(
                        columns.command_ids, places, tokens, strict=True
                    )
                    if token
                )
            self._index.update(entries)
        self.positions[partition] = offset
        if horizon is None:
            self.horizons.pop(partition, None)
        else:
            self.horizons[partition] = horizon

    def _forget_oldest(self, partition: int, log: OutcomeLog) -> None:
        # Down to a chunk boundary, keeping at least the window.
        keep_from = (log.end - self._window) // self.chunk_entries * self.chunk_entries
        latest = latest_command_id_millis(log.command_ids(log.start, keep_from))
        if latest is not None:
            self.horizons[partition] = max(latest, self.horizons.get(partition, latest))
        for index in range(log.start, keep_from):
            command_id = log.command_id(index)
            entry = self._index.get(command_id)
            if entry == (partition, index) or (
                # This command's, not a later one's that reused its id: a command's events in
                # one partition are adjacent (offset, offset + 1), a later batch's are beyond.
                isinstance(entry, Outcome)
                and entry.positions.get(partition, -1) <= log.offset(index) + 1
            ):
                del self._index[command_id]
        log.drop_oldest(keep_from - log.start)

    def _log(self, partition: int) -> OutcomeLog:
        log = self.logs.get(partition)
        if log is None:
            log = self.logs[partition] = OutcomeLog()
        return log

    def _partition_accounts(self, partition: int) -> set[str]:
        ids = self.account_ids.get(partition)
        if ids is None:
            ids = self.account_ids[partition] = set()
        return ids
