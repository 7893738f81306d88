"""Snapshots of the write model: written every N events and at a clean stop, read at start.

A restart then reads the latest snapshot of each owned partition and replays only the events
after it, instead of folding the whole log. Snapshots are a cache of that fold; the log stays
the truth (docs/design.md, decision 1). A snapshot is written in a Kafka transaction of a
producer of the shard's own (fenced like the others when an instance starts), so a crash
mid-way leaves the previous snapshot whole.

Writing one has two halves: `capture` takes what is to be written from the model, between two
batches, and `publish` encodes and writes it, touching nothing but the capture (so it may run
on another thread while the model moves on; see background_snapshots.py).
"""

from __future__ import annotations

import logging
import math
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TypeVar

from command_server.captured_outcomes import CapturedOutcomes, GrowingChunk
from command_server.event_store import EventStore
from command_server.outcome_log import OutcomeColumns
from command_server.snapshot_format import (
    ACCOUNTS_PER_CHUNK,
    AccountChunk,
    Body,
    Manifest,
    Memory,
    OutcomeChunk,
    UnreadableSnapshot,
    accounts_key,
    decode,
    encode,
    manifest_key,
    outcomes_key,
    partition_of_key,
)
from command_server.topic import partitions_changed
from command_server.write_model import WriteModel
from ledger.domain.account import Account

log = logging.getLogger(__name__)

_Body = TypeVar("_Body", Manifest, OutcomeChunk, AccountChunk)

_REWRITE_AFTER = 2
"""A partition's accounts are all written again once its chunks hold more than this many
entries per live account (restoring reads every chunk)."""


@dataclass(slots=True)
class _Written:
    """What this process knows the snapshot topic holds for one partition."""

    lineage: str = field(default_factory=lambda: uuid.uuid4().hex)
    complete: set[int] = field(default_factory=set)
    """Full outcome chunks of this lineage already in the topic: never written again."""
    keys: set[str] = field(default_factory=set)
    """Every live key of the partition, so that those no longer part of it get tombstones."""
    next_offset: int = 0
    generation: str = ""
    """The account chunks in the topic: those of this generation, in order, a later chunk's
    account replacing an earlier one's; "" before the first snapshot."""
    account_chunks: int = 0
    account_entries: int = 0
    """Accounts in those chunks, counting each time one was written again."""


@dataclass(frozen=True, slots=True)
class Capture:
    """A snapshot taken from the model and not written yet: records to write (None: a
    tombstone), and what the topic holds per partition once they are written."""

    records: list[tuple[str, Body | GrowingChunk | None]]
    updated: dict[int, _Written]
    accounts: dict[int, set[str]]
    """Per partition updated: the accounts changed since the last snapshot written, which
    this one writes."""
    taken_at: float


@dataclass(frozen=True, slots=True)
class SnapshotTarget:
    topic: str
    event_topic: str
    event_topic_id: str
    every_events: int
    """Write once this many events were folded in since the last snapshot; 0: never."""
    partitions: int = 0
    """The event topic's partition count now."""
    min_seconds: float = 0.0
    """And once this many seconds have passed since the last one began (0: no floor). Under
    load, every snapshot writes most accounts and each partition's last outcome chunk again,
    whatever the events since: the floor bounds that cost per second rather than per event,
    and a crash then replays up to this many seconds of events (LEDGER_SNAPSHOT_MIN_SECONDS)."""


class Snapshots:
    def __init__(self, store: EventStore, target: SnapshotTarget) -> None:
        self._store = store
        self._target = target
        self._written: dict[int, _Written] = {}
        self._since = 0
        self._began = -math.inf
        """When the last capture was taken (time.monotonic)."""
        self._memory = Memory()
        """Touched only by `publish` (at most one runs at a time: background_snapshots.py)."""
        self._model: WriteModel | None = None
        """The model restored or captured last: its changed accounts are relative to what
        `_written` and `_unwritten` say."""
        self._unwritten: dict[int, set[str]] = {}
        """Per partition: accounts changed since the last snapshot written (not changed in
        place: a capture holds them)."""
        self._rewrite: set[int] = set()
        """Partitions whose accounts are all written again (a new generation) by their next
        snapshot written: the model's changes are not relative to what the topic holds."""
        self._outcomes = CapturedOutcomes()

    def restore(
        self, model: WriteModel, partitions: Sequence[int], latest: Mapping[str, bytes]
    ) -> dict[int, int]:
        """Load every owned partition's usable snapshot into `model`; returns, per partition,
        the offset its replay starts from."""
        keys: dict[int, set[str]] = {p: set() for p in partitions}
        for key in latest:
            owner = partition_of_key(key)
            if owner in keys:
                keys[owner].add(key)
        start: dict[int, int] = {}
        for p in partitions:
            self._written[p] = _Written(keys=keys[p])
            if manifest_key(p) not in latest:
                continue
            try:
                manifest, accounts, outcomes = self._read(p, latest, model.chunk_entries)
            except UnreadableSnapshot as exc:
                log.warning("partition %d: snapshot not usable (%s); replaying it whole", p, exc)
                continue
            horizon = manifest.horizon_ms if manifest.horizon_ms >= 0 else None
            model.restore(p, accounts, outcomes, manifest.next_offset - 1, horizon)
            for transfer in manifest.in_flight:
                model.transfers.add(transfer)
            model.saga_positions[p] = manifest.saga_next_offset
            start_chunk = manifest.outcomes_start // model.chunk_entries
            self._written[p] = _Written(
                manifest.lineage,
                set(range(start_chunk, manifest.outcomes_end // model.chunk_entries)),
                keys[p],
                manifest.next_offset,
                manifest.generation,
                manifest.account_chunks,
                len(accounts),
            )
            start[p] = manifest.next_offset
        # The accounts restored are those the topic holds; the replay changes them.
        model.take_changed_accounts()
        self._model, self._unwritten, self._rewrite = model, {}, set()
        return start

    def _read(
        self, partition: int, latest: Mapping[str, bytes], chunk_entries: int
    ) -> tuple[Manifest, list[Account], list[OutcomeColumns]]:
        manifest = _expect(Manifest, latest, manifest_key(partition))
        target = self._target
        if (manifest.topic, manifest.topic_id, manifest.partition) != (
            target.event_topic,
            target.event_topic_id,
            partition,
        ):
            raise UnreadableSnapshot(
                f"it is of {manifest.topic} (id {manifest.topic_id}) partition "
                f"{manifest.partition}, not of this topic (id {target.event_topic_id})"
            )
        if manifest.partitions != target.partitions:
            raise partitions_changed(
                target.event_topic,
                target.partitions,
                f"the snapshot of partition {partition} was written when it had "
                f"{manifest.partitions}",
            )
        if manifest.chunk_entries != chunk_entries:
            raise UnreadableSnapshot(
                f"its outcome chunks hold {manifest.chunk_entries} entries, this server's "
                f"{chunk_entries} (LEDGER_DEDUPE_CHUNK_ENTRIES)"
            )
        outcomes: list[OutcomeColumns] = []
        expected = manifest.outcomes_start
        for chunk in range(expected // chunk_entries, -(-manifest.outcomes_end // chunk_entries)):
            body = _expect(OutcomeChunk, latest, outcomes_key(partition, chunk))
            columns = body.columns
            if body.lineage != manifest.lineage or columns.first != expected:
                raise UnreadableSnapshot(f"outcome chunk {chunk} is not of this snapshot")
            outcomes.append(columns)
            expected += len(columns)
        if expected != manifest.outcomes_end:
            raise UnreadableSnapshot(f"outcomes end at {expected}, not {manifest.outcomes_end}")
        accounts: list[Account] = []
        for chunk in range(manifest.account_chunks):
            slice_ = _expect(AccountChunk, latest, accounts_key(partition, chunk))
            if slice_.generation != manifest.generation:
                raise UnreadableSnapshot(f"account chunk {chunk} is not of this snapshot")
            accounts += slice_.accounts
        return manifest, accounts, outcomes

    def note(self, events: int) -> None:
        self._since += events

    @property
    def due(self) -> bool:
        target = self._target
        return (
            0 < target.every_events <= self._since
            and time.monotonic() - self._began >= target.min_seconds
        )

    def write(self, model: WriteModel) -> None:
        """Write a snapshot of every partition that changed since its last one, now.

        Raises what EventStore.publish raises; on failure nothing is recorded as written, so
        the next attempt writes everything again.
        """
        capture = self.capture(model)
        if capture is not None:
            self.recorded(capture, self.publish(capture))

    def capture(self, model: WriteModel) -> Capture | None:
        """What a snapshot of `model` as it is now would write; None if nothing changed."""
        records: list[tuple[str, Body | GrowingChunk | None]] = []
        updated: dict[int, _Written] = {}
        unwritten = self._unwritten
        if model is not self._model:
            # A model this writer neither restored nor captured: its changes are not relative
            # to the topic's accounts.
            unwritten, self._rewrite = {}, set(self._written)
        for partition, changed in model.take_changed_accounts().items():
            earlier = unwritten.get(partition)
            unwritten[partition] = earlier | changed if earlier else changed
        self._model, self._unwritten = model, unwritten
        self._outcomes.begin(model)
        accounts: dict[int, set[str]] = {}
        for partition, written in self._written.items():
            position = model.positions.get(partition)
            if position is None or position + 1 == written.next_offset:
                continue
            changed = accounts[partition] = unwritten.get(partition, set())
            updated[partition] = self._partition_records(
                partition, written, model, None if partition in self._rewrite else changed, records
            )
        # Whatever happens, the next attempt waits for another `every_events` events (and
        # `min_seconds`): a broken snapshot topic must not cost every batch a failed transaction.
        self._since = 0
        self._began = time.monotonic()
        return Capture(records, updated, accounts, self._began) if records else None

    def publish(self, capture: Capture) -> int:
        """Encode and write `capture` in one transaction (reads nothing but the capture);
        returns the bytes written."""
        memory = self._memory
        records = [
            (key, None if body is None else encode(_whole(body), memory))
            for key, body in capture.records
        ]
        self._store.publish(self._target.topic, records)
        return sum(len(value) for _, value in records if value is not None)

    def recorded(self, capture: Capture, size: int) -> None:
        """`capture` is in the topic (`size` bytes): later snapshots build on it."""
        self._written.update(capture.updated)
        self._rewrite.difference_update(capture.updated)
        unwritten = self._unwritten
        for partition, written in capture.accounts.items():
            left = unwritten.get(partition, set())
            # Usually the very set written: no capture since.
            unwritten[partition] = set() if left is written else left - written
        log.info(
            "snapshot of partitions %s written (%d records, %.2f MB) in %.3fs",
            sorted(capture.updated),
            len(capture.records),
            size / 1e6,
            time.monotonic() - capture.taken_at,
        )

    def close(self) -> None:
        self._store.close()

    def _partition_records(
        self,
        partition: int,
        written: _Written,
        model: WriteModel,
        changed_ids: set[str] | None,
        records: list[tuple[str, Body | GrowingChunk | None]],
    ) -> _Written:
        """The records of one partition's snapshot, appended to `records`; `changed_ids`: its
        accounts changed since its last snapshot written (None: unknown)."""
        outcomes = model.logs[partition]
        start, end = outcomes.start, outcomes.end
        size = model.chunk_entries
        complete = {c for c in written.complete if c * size >= start}
        keys = {manifest_key(partition)}

        def add(key: str, body: Body | GrowingChunk) -> None:
            keys.add(key)
            records.append((key, body))

        for chunk in range(start // size, -(-end // size)):
            key = outcomes_key(partition, chunk)
            if chunk in complete:
                keys.add(key)
                continue
            add(key, GrowingChunk(written.lineage, self._outcomes.chunk(model, partition, chunk)))
            if (chunk + 1) * size <= end:
                complete.add(chunk)
        account = model.accounts.__getitem__
        ids = model.account_ids.get(partition, set())
        generation, chunks, entries = written.generation, written.account_chunks, 0
        if (
            generation
            and changed_ids is not None
            and written.account_entries + len(changed_ids) <= _REWRITE_AFTER * len(ids)
        ):
            # Only what changed, after the chunks already there: a snapshot costs what happened
            # since the last one, not the number of accounts.
            entries = written.account_entries
            keys.update(accounts_key(partition, n) for n in range(chunks))
            changed = list(map(account, changed_ids))
        else:
            # A new generation of every account, once the changes outweigh the accounts.
            generation, chunks, changed = uuid.uuid4().hex, 0, list(map(account, ids))
        for at in range(0, len(changed), ACCOUNTS_PER_CHUNK):
            slice_ = changed[at : at + ACCOUNTS_PER_CHUNK]
            add(accounts_key(partition, chunks), AccountChunk(generation, slice_))
            chunks += 1
            entries += len(slice_)
        records.extend((key, None) for key in sorted(written.keys - keys))
        next_offset = model.positions[partition] + 1
        manifest = Manifest(
            self._target.event_topic,
            self._target.event_topic_id,
            partition,
            self._target.partitions,
            written.lineage,
            generation,
            next_offset,
            start,
            end,
            chunks,
            size,
            model.horizons.get(partition, -1),
            model.transfers.of_accounts(model.account_ids.get(partition, set())),
            model.saga_positions.get(partition, 0),
        )
        # Last in the transaction, although the transaction makes the order invisible.
        records.append((manifest_key(partition), manifest))
        return _Written(written.lineage, complete, keys, next_offset, generation, chunks, entries)


def _whole(body: Body | GrowingChunk) -> Body:
    return body.body() if isinstance(body, GrowingChunk) else body


def _expect(kind: type[_Body], latest: Mapping[str, bytes], key: str) -> _Body:
    value = latest.get(key)
    if value is None:
        raise UnreadableSnapshot(f"{key} is missing")
    body = decode(value)
    if not isinstance(body, kind):
        raise UnreadableSnapshot(f"{key} holds a {type(body).__name__}")
    return body
