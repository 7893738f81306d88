"""The dedupe horizon: what a partition forgot bounds which ids it may decide again, across
eviction, transfers, snapshots and replays; the batcher refuses a forgotten retry as too old."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from command_server.shards import Shard
from command_server.snapshot_format import MAGIC, Manifest, decode
from command_server.snapshots import Snapshots
from command_server.write_model import WriteModel
from command_server.writer.batcher import Batcher
from command_server.writer.protocol import Ack, CommandIdReused
from ledger.command_ids import command_id_millis, new_command_id
from ledger.domain.commands import Deposit, Transfer, literal_fingerprint
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.events.records import Event
from ledger.partitioning import partition_of
from tests.unit import test_write_model_snapshots as folding
from tests.unit.fake_event_store import FakeEventStore
from tests.unit.test_batcher import NOW, SHARD, commit, funded

# Small chunks and a small window: several evictions from a log of a few hundred events.
PARTITIONS, MILLIS, WINDOW = folding.PARTITIONS, folding.MILLIS, 30
history, fold, tail = folding.history, folding.fold, folding.tail

Log = Sequence[tuple[Event, int, int]]


def expected_horizons(model: WriteModel, log: Log) -> dict[int, int]:
    """Per partition, the latest id-time among the entries before its log's start."""
    horizons: dict[int, int] = {}
    for partition in PARTITIONS:
        events = [e for e, p, _ in log if p == partition]
        forgotten = events[: model.logs[partition].start]
        times = [t for e in forgotten if (t := command_id_millis(e.command_id)) is not None]
        if times:
            horizons[partition] = max(times)
    return horizons


def partitions_of_commands(log: Log) -> dict[str, set[int]]:
    touched: dict[str, set[int]] = {}
    for event, partition, _ in log:
        touched.setdefault(event.command_id, set()).add(partition)
    return touched


def assert_nothing_forgotten_passes(model: WriteModel, log: Log) -> None:
    """The invariant: an applied command the model does not remember is behind a horizon."""
    for command_id, partitions in partitions_of_commands(log).items():
        if model.outcome(command_id) is None:
            assert model.forgotten(command_id, partitions) is not None, command_id


def test_forgetting_moves_each_horizon_to_the_latest_id_time_it_forgot() -> None:
    log = history(1, 400)
    model = fold(log, window=WINDOW)

    assert model.horizons == expected_horizons(model, log)
    assert set(model.horizons) == set(PARTITIONS)
    assert_nothing_forgotten_passes(model, log)
    # Ids after the horizons are new commands.
    later = new_command_id(max(model.horizons.values()) + 1)
    assert model.forgotten(later, PARTITIONS) is None


def test_ids_that_are_not_uuid7_move_no_horizon() -> None:
    log = [
        (dataclasses.replace(event, command_id=f"old-{n}"), partition, offset)
        for n, (event, partition, offset) in enumerate(history(2, 300))
    ]
    model = fold(log, window=WINDOW)

    assert model.logs[0].start > 0
    assert model.horizons == {}
    assert model.forgotten(new_command_id(MILLIS), PARTITIONS) is None


def test_a_transfer_forgotten_in_one_partition_is_behind_that_partitions_horizon() -> None:
    log = history(3, 400)
    model = fold(log, window=WINDOW)
    transfers = [ids for ids in partitions_of_commands(log).values() if len(ids) == 2]
    assert transfers
    for command_id, partitions in partitions_of_commands(log).items():
        if len(partitions) == 2 and model.outcome(command_id) is None:
            behind = model.forgotten(command_id, partitions)
            assert behind in partitions
            assert command_id_millis(command_id) <= model.horizons[behind]  # type: ignore[operator]


def test_a_snapshot_carries_the_horizons_and_a_restart_keeps_them() -> None:
    log = history(4, 400)
    whole = fold(log, window=WINDOW)
    topic = folding.CapturedTopic()
    writer, model = folding.fresh_writer(topic, window=WINDOW)
    cut = len(log) * 2 // 3
    for event, partition, offset in log[:cut]:
        model.apply(event, partition, offset)
    writer.write(model)
    manifests = [decode(topic.latest[f"{p}/manifest"]) for p in PARTITIONS]
    assert all(isinstance(m, Manifest) and m.chunk_entries == folding.CHUNK for m in manifests)
    assert {m.partition: m.horizon_ms for m in manifests if isinstance(m, Manifest)} == {
        p: model.horizons.get(p, -1) for p in PARTITIONS
    }

    again, start = folding.restored(topic, window=WINDOW)
    assert again.horizons == model.horizons
    for event, partition, offset in tail(log, start):
        again.apply(event, partition, offset)
    assert again.horizons == whole.horizons
    assert_nothing_forgotten_passes(again, log)


def test_a_snapshot_without_horizons_or_of_another_chunk_size_makes_its_partitions_replay() -> None:
    topic = folding.CapturedTopic()
    writer, model = folding.fresh_writer(topic, window=WINDOW)
    for event, partition, offset in history(6, 300):
        model.apply(event, partition, offset)
    writer.write(model)
    assert folding.restored(topic, window=WINDOW)[1]

    # Format 2 had no horizon: what its partitions forgot is unknown, so they are replayed.
    older = folding.CapturedTopic()
    older.latest = {key: b"LSS2" + value[len(MAGIC) :] for key, value in topic.latest.items()}
    assert folding.restored(older, window=WINDOW)[1] == {}
    resized = WriteModel(WINDOW, PARTITIONS, folding.CHUNK * 2)
    reader = Snapshots(topic, folding.TARGET)  # type: ignore[arg-type]
    assert reader.restore(resized, PARTITIONS, topic.latest) == {}
    assert resized.horizons == {}


def test_a_replay_rebuilds_the_same_horizons() -> None:
    log = history(5, 400)
    assert fold(log, window=WINDOW).horizons == fold(log, window=WINDOW).horizons


# --- the batcher: a retry it no longer remembers ----------------------------------------------


def forgetful_batcher() -> tuple[Batcher, WriteModel, FakeEventStore]:
    # One entry per partition kept beyond chunks of two: a command is forgotten a few later.
    model = WriteModel(dedupe_window=len(SHARD.owned_partitions), partitions=SHARD.owned_partitions)
    model.chunk_entries = 2
    store = FakeEventStore()
    return Batcher(model, store, SHARD, clock=lambda: NOW), model, store


def two_accounts_in_different_partitions() -> tuple[str, str]:
    first = "a1"
    other = next(
        f"b{n}"
        for n in range(100)
        if partition_of(f"b{n}", SHARD.partitions) != partition_of(first, SHARD.partitions)
    )
    return first, other


def applied(store: FakeEventStore, command_id: str) -> int:
    return sum(event.command_id == command_id for event, _ in store.appended)


def too_old(answer: Ack | BaseException) -> str:
    assert isinstance(answer, Rejection), answer
    assert answer.kind is RejectionKind.PRECONDITION
    assert "too old to deduplicate" in answer.message
    assert "ListTransactions" in answer.message
    return answer.message


def test_a_retry_after_its_id_was_forgotten_is_refused_and_applied_once() -> None:
    batcher, model, store = forgetful_batcher()
    funded(batcher, "a1", "10.00")
    original = Deposit(new_command_id(MILLIS), "a1", "1.00")
    assert isinstance(commit(batcher, original)[0], Ack)
    for n in range(4):
        assert isinstance(commit(batcher, Deposit(new_command_id(MILLIS + n), "a1", "1"))[0], Ack)
    assert model.outcome(original.command_id) is None

    (answer,) = commit(batcher, original)

    too_old(answer)
    assert applied(store, original.command_id) == 1
    # A command made after what was forgotten is new, and applied.
    newer = max(model.horizons.values()) + 1
    assert isinstance(commit(batcher, Deposit(new_command_id(newer), "a1", "1"))[0], Ack)


def test_a_transfer_is_refused_when_either_of_its_partitions_forgot_it() -> None:
    batcher, model, store = forgetful_batcher()
    source, destination = two_accounts_in_different_partitions()
    funded(batcher, source, "10.00")
    funded(batcher, destination, "10.00")
    transfer = Transfer(new_command_id(MILLIS), source, destination, "1.00")
    assert isinstance(commit(batcher, transfer)[0], Ack)
    # Only the source's partition moves on and forgets.
    for n in range(4):
        later = Deposit(new_command_id(MILLIS + 1 + n), source, "1")
        assert isinstance(commit(batcher, later)[0], Ack)
    source_partition = SHARD.partition_of(source)
    assert model.outcome(transfer.command_id) is None
    assert SHARD.partition_of(destination) not in model.horizons

    message = too_old(commit(batcher, transfer)[0])

    assert f"(partition {source_partition})" in message
    assert applied(store, transfer.command_id) == 2  # its debit and its credit, once


def test_an_amount_written_differently_is_the_same_command() -> None:
    batcher, _, store = forgetful_batcher()
    funded(batcher, "a1", "10.00")
    command_id = new_command_id()
    (first,) = commit(batcher, Deposit(command_id, "a1", "7.5"))
    (again,) = commit(batcher, Deposit(command_id, "a1", "7.50"))
    (padded,) = commit(batcher, Deposit(command_id, "a1", "007.5"))

    assert isinstance(first, Ack)
    assert again == padded == first
    assert applied(store, command_id) == 1


def test_an_event_fingerprinted_on_its_literal_amount_matches_its_exact_retry() -> None:
    # Recorded before fingerprints were canonical: "7.50" hashed as written.
    batcher, model, _ = forgetful_batcher()
    funded(batcher, "a1", "10.00")
    old = Deposit(new_command_id(), "a1", "7.50")
    (first,) = commit(batcher, old)
    assert isinstance(first, Ack)
    outcome = model.outcome(old.command_id)
    assert outcome is not None
    outcome.fingerprint = literal_fingerprint(old)

    assert commit(batcher, old) == [first]
    (canonical,) = commit(batcher, Deposit(old.command_id, "a1", "7.5"))
    assert isinstance(canonical, CommandIdReused)


def test_a_batch_longer_than_its_partitions_share_of_the_window_is_answered_in_full() -> None:
    # Six partitions share a window of 12: two outcomes each, and a chunk of 2 forgotten at a
    # time. Folding the batch forgets some of its own commands before it is answered.
    shard = Shard(index=0, count=1, partitions=6)
    model = WriteModel(12, shard.owned_partitions, chunk_entries=2)
    store = FakeEventStore()
    batcher = Batcher(model, store, shard, clock=lambda: NOW)
    funded(batcher, "a1", "10.00")
    deposits = [Deposit(new_command_id(), "a1", "0.01") for _ in range(10)]
    answers = commit(batcher, *deposits)
    assert model.outcome(deposits[0].command_id) is None  # forgotten by its own batch's fold
    acks = [answer for answer in answers if isinstance(answer, Ack)]
    assert len(acks) == len(deposits), answers
    assert [ack.positions[0][1] for ack in acks] == store.offsets[-10:]
