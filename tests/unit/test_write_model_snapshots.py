"""Snapshots of the write model, without Kafka: restoring one and folding the rest of the log in
must give exactly what folding the whole log gives."""

from __future__ import annotations

import random
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

import pytest

from command_server import snapshots
from command_server.snapshot_format import (
    MAGIC,
    AccountChunk,
    Manifest,
    OutcomeChunk,
    UnreadableSnapshot,
    decode,
    encode,
)
from command_server.snapshots import Snapshots, SnapshotTarget
from command_server.topic import UnsafeTopic
from command_server.write_model import WriteModel
from ledger.command_ids import new_command_id
from ledger.domain.account import Account
from ledger.domain.commands import Command, Deposit, OpenAccount, Transfer, Withdraw
from ledger.domain.decider import decide, evolve
from ledger.domain.rejection import Rejection
from ledger.events.records import Event
from ledger.partitioning import partition_of

PARTITIONS = [0, 1, 2]
TARGET = SnapshotTarget("account_events.snapshots", "account_events", "topic-id-1", every_events=1)
START = datetime(2026, 1, 1, tzinfo=UTC)
MILLIS = int(START.timestamp() * 1000)


class CapturedTopic:
    """Stands in for EventStore.publish: keeps the latest value of each key, as compaction does."""

    def __init__(self) -> None:
        self.latest: dict[str, bytes] = {}
        self.transactions = 0

    def publish(self, topic: str, records: Sequence[tuple[str, bytes | None]]) -> None:
        assert topic == TARGET.topic
        self.transactions += 1
        for key, value in records:
            if value is None:
                self.latest.pop(key, None)
            else:
                self.latest[key] = value


# Many chunks and several evictions from a log of a few hundred events.
CHUNK = 16


@pytest.fixture(autouse=True)
def small_chunks(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(snapshots, "ACCOUNTS_PER_CHUNK", 3)


def history(seed: int, commands: int, reuse: float = 0.0) -> list[tuple[Event, int, int]]:
    """A valid log: (event, partition, offset) of random commands over ten accounts; with
    `reuse`, that share of them use again the id of an earlier command (a retry long after, or
    a client's mistake): its outcome then changes."""
    rng = random.Random(seed)
    state: dict[str, Account] = {}
    offsets = dict.fromkeys(PARTITIONS, -1)
    log: list[tuple[Event, int, int]] = []
    ids = [f"acct-{n}" for n in range(10)]
    used: list[str] = []
    script: list[Command] = [OpenAccount(new_command_id(), a, "EUR", "owner") for a in ids]
    for n in range(commands):
        source, target = rng.sample(ids, 2)
        amount = str(rng.randint(1, 300))
        # Ids made by many clients: roughly, not strictly, in the order they reach the log.
        command_id = new_command_id(MILLIS + (n + rng.randint(-20, 20)) * 1000)
        if reuse and used and rng.random() < reuse:
            command_id = rng.choice(used)
        used.append(command_id)
        choices: list[Command] = [
            Deposit(command_id, source, amount),
            Withdraw(command_id, source, amount),
            Transfer(command_id, source, target, amount),
        ]
        script.append(rng.choice(choices))
    for step, command in enumerate(script):
        try:
            events = decide(command, state, START + timedelta(seconds=step))
        except Rejection:
            continue
        for event in events:
            state[event.account_id] = evolve(state.get(event.account_id), event)
            partition = partition_of(event.account_id, len(PARTITIONS))
            # Gaps, as transaction markers leave them.
            offsets[partition] += 2
            log.append((event, partition, offsets[partition]))
    return log


def fold(log: Sequence[tuple[Event, int, int]], window: int = 10_000) -> WriteModel:
    model = WriteModel(window, PARTITIONS, CHUNK)
    for event, partition, offset in log:
        model.apply(event, partition, offset)
    return model


def answers(model: WriteModel, log: Sequence[tuple[Event, int, int]]) -> dict[str, object]:
    found: dict[str, object] = {}
    for event, _, _ in log:
        outcome = model.outcome(event.command_id)
        found[event.command_id] = (
            None
            if outcome is None
            else (outcome.fingerprint, outcome.version, outcome.positions, outcome.token)
        )
    return found


def assert_same_answers(
    restored: dict[str, object], whole: dict[str, object], log: Sequence[tuple[Event, int, int]]
) -> None:
    """What the whole fold remembers, the restored model answers identically; it may remember
    more (a transfer forgotten in one partition stays answered by its other event), and then
    with the original answer."""
    original = answers(fold(log), log)
    for command_id, answer in whole.items():
        if answer is not None:
            assert restored[command_id] == answer, command_id
        elif restored[command_id] is not None:
            assert restored[command_id] == original[command_id], command_id
    assert sum(a is not None for a in restored.values()) >= sum(
        a is not None for a in whole.values()
    )


def fresh_writer(
    topic: CapturedTopic, window: int = 10_000, target: SnapshotTarget = TARGET
) -> tuple[Snapshots, WriteModel]:
    """A snapshot writer on a topic with no snapshot yet, and the empty model it snapshots."""
    writer = Snapshots(topic, target)  # type: ignore[arg-type]
    model = WriteModel(window, PARTITIONS, CHUNK)
    writer.restore(model, PARTITIONS, {})
    return writer, model


def restored(topic: CapturedTopic, window: int = 10_000) -> tuple[WriteModel, dict[int, int]]:
    model = WriteModel(window, PARTITIONS, CHUNK)
    start = Snapshots(topic, TARGET).restore(model, PARTITIONS, topic.latest)  # type: ignore[arg-type]
    return model, start


def tail(
    log: Sequence[tuple[Event, int, int]], start: dict[int, int]
) -> list[tuple[Event, int, int]]:
    return [(e, p, o) for e, p, o in log if o >= start.get(p, 0)]


@pytest.mark.parametrize("window", [10_000, 40])
@pytest.mark.parametrize("seed", range(6))
def test_snapshot_plus_tail_equals_the_whole_fold(seed: int, window: int) -> None:
    log = history(seed, 250)
    whole = fold(log, window)
    topic = CapturedTopic()
    cut = random.Random(seed).randrange(len(log) // 3, len(log))
    writer, model = fresh_writer(topic, window)
    # Snapshots taken now and then while the log grows: later ones write only what changed.
    for at, (event, partition, offset) in enumerate(log[:cut]):
        model.apply(event, partition, offset)
        if at % 37 == 0:
            writer.write(model)
    writer.write(model)

    again, start = restored(topic, window)
    assert start
    assert all(start[p] <= max(o for _, q, o in log if q == p) + 1 for p in start)
    for event, partition, offset in tail(log, start):
        again.apply(event, partition, offset)
    assert again.accounts == whole.accounts
    assert again.positions == whole.positions
    assert again.horizons == whole.horizons
    assert_same_answers(answers(again, log), answers(whole, log), log)


def test_a_restored_model_snapshots_again_and_restores_the_same() -> None:
    log = history(11, 200)
    topic = CapturedTopic()
    writer, model = fresh_writer(topic)
    for event, partition, offset in log[:120]:
        model.apply(event, partition, offset)
    writer.write(model)
    second, start = restored(topic)
    second_writer = Snapshots(topic, TARGET)  # type: ignore[arg-type]
    second_writer.restore(WriteModel(10_000, PARTITIONS, CHUNK), PARTITIONS, topic.latest)
    for event, partition, offset in tail(log, start):
        second.apply(event, partition, offset)
    second_writer.write(second)
    third, start = restored(topic)
    assert tail(log, start) == []
    whole = fold(log)
    assert third.accounts == whole.accounts
    assert_same_answers(answers(third, log), answers(whole, log), log)


def test_the_window_forgets_old_commands_but_keeps_the_last_ones() -> None:
    log = history(3, 400)
    window = 30
    model = fold(log, window)
    whole = fold(log)
    remembered = answers(model, log)
    # At least the last `window` commands of the shard are remembered, as a replay would.
    recent = [e.command_id for e, _, _ in log][-window:]
    assert all(remembered[c] == answers(whole, log)[c] for c in recent)
    assert sum(1 for v in remembered.values() if v is None) > 0
    assert all(len(model.logs[p]) < window + 16 for p in PARTITIONS)


def test_a_snapshot_of_another_topic_is_ignored() -> None:
    log = history(5, 50)
    topic = CapturedTopic()
    writer = Snapshots(topic, TARGET)  # type: ignore[arg-type]
    model = fold(log)
    writer.restore(WriteModel(10_000, PARTITIONS, CHUNK), PARTITIONS, {})
    writer.write(model)
    recreated = SnapshotTarget(TARGET.topic, TARGET.event_topic, "topic-id-2", every_events=1)
    fresh = WriteModel(10_000, PARTITIONS, CHUNK)
    assert Snapshots(topic, recreated).restore(fresh, PARTITIONS, topic.latest) == {}  # type: ignore[arg-type]
    assert fresh.accounts == {}


def test_a_missing_chunk_makes_the_partition_replay() -> None:
    topic = CapturedTopic()
    writer = Snapshots(topic, TARGET)  # type: ignore[arg-type]
    writer.restore(WriteModel(10_000, PARTITIONS, CHUNK), PARTITIONS, {})
    writer.write(fold(history(6, 120)))
    victim = next(k for k in topic.latest if "/outcomes/" in k)
    del topic.latest[victim]
    _, start = restored(topic)
    assert int(victim.split("/")[0]) not in start
    assert len(start) == len(PARTITIONS) - 1


def test_records_round_trip_and_garbage_is_unreadable() -> None:
    model = fold(history(7, 40))
    topic = CapturedTopic()
    writer = Snapshots(topic, TARGET)  # type: ignore[arg-type]
    writer.restore(WriteModel(10_000, PARTITIONS, CHUNK), PARTITIONS, {})
    writer.write(model)
    kinds = {type(decode(value)) for value in topic.latest.values()}
    assert kinds == {Manifest, OutcomeChunk, AccountChunk}
    for value in topic.latest.values():
        assert encode(decode(value)) == value
    with pytest.raises(UnreadableSnapshot):
        decode(b"\x02garbage")


def _accounts_written(capture: snapshots.Capture) -> list[str]:
    return [
        account.account_id
        for _, body in capture.records
        if isinstance(body, AccountChunk)
        for account in body.accounts
    ]


def test_a_snapshot_writes_only_the_accounts_changed_since_the_last_one(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # Ten accounts over three partitions: no rewrite of a whole generation in this test.
    monkeypatch.setattr(snapshots, "_REWRITE_AFTER", 100)
    log = history(21, 200)
    assert len(log) > 110
    topic = CapturedTopic()
    writer, model = fresh_writer(topic)
    for event, partition, offset in log[:100]:
        model.apply(event, partition, offset)
    first = writer.capture(model)
    assert first is not None
    assert sorted(_accounts_written(first)) == sorted(model.accounts)
    writer.recorded(first, writer.publish(first))

    for event, partition, offset in log[100:104]:
        model.apply(event, partition, offset)
    second = writer.capture(model)
    assert second is not None
    assert sorted(_accounts_written(second)) == sorted({e.account_id for e, _, _ in log[100:104]})
    writer.recorded(second, writer.publish(second))
    again, start = restored(topic)
    assert tail(log[:104], start) == []
    assert again.accounts == fold(log[:104]).accounts

    # A restored writer knows what the topic holds, and goes on writing only changes.
    restarted = Snapshots(topic, TARGET)  # type: ignore[arg-type]
    model = WriteModel(10_000, PARTITIONS, CHUNK)
    restarted.restore(model, PARTITIONS, topic.latest)
    for event, partition, offset in log[104:106]:
        model.apply(event, partition, offset)
    third = restarted.capture(model)
    assert third is not None
    assert sorted(_accounts_written(third)) == sorted({e.account_id for e, _, _ in log[104:106]})


def test_changes_outweighing_the_accounts_start_a_new_generation() -> None:
    log = history(22, 400)
    topic = CapturedTopic()
    writer, model = fresh_writer(topic)
    generations: set[str] = set()
    for at, (event, partition, offset) in enumerate(log):
        model.apply(event, partition, offset)
        if at % 5 == 0:
            writer.write(model)
            manifests = [decode(v) for k, v in topic.latest.items() if k.endswith("manifest")]
            generations.update(m.generation for m in manifests if isinstance(m, Manifest))
            chunks = sum(1 for k in topic.latest if "/accounts/" in k)
            # Bounded by twice the accounts (in chunks of 3), plus the chunk being filled.
            assert chunks <= sum(
                2 * len(model.account_ids[p]) // 3 + 2 for p in PARTITIONS if p in model.logs
            )
    assert len(generations) > len(PARTITIONS)
    again, start = restored(topic)
    for event, partition, offset in tail(log, start):
        again.apply(event, partition, offset)
    assert again.accounts == fold(log).accounts


def test_a_record_whose_checksum_fails_is_unreadable() -> None:
    value = bytearray(encode(AccountChunk("g1", [])))
    value[-1] ^= 0x01

    with pytest.raises(UnreadableSnapshot, match="checksum"):
        decode(bytes(value))


def test_a_record_of_the_format_without_checksum_is_unreadable() -> None:
    old = encode(AccountChunk("g1", []))[len(MAGIC) + 16 :]

    with pytest.raises(UnreadableSnapshot, match="not of this format"):
        decode(old)


def test_a_corrupt_snapshot_record_makes_its_partition_replay() -> None:
    topic = CapturedTopic()
    writer = Snapshots(topic, TARGET)  # type: ignore[arg-type]
    writer.restore(WriteModel(10_000, PARTITIONS, CHUNK), PARTITIONS, {})
    writer.write(fold(history(8, 120)))
    victim = next(k for k in topic.latest if "/accounts/" in k)
    topic.latest[victim] = topic.latest[victim][:-1] + bytes([topic.latest[victim][-1] ^ 1])

    _, start = restored(topic)

    assert int(victim.split("/")[0]) not in start
    assert len(start) == len(PARTITIONS) - 1


def test_a_snapshot_written_with_another_partition_count_refuses_the_start() -> None:
    topic = CapturedTopic()
    writer = Snapshots(topic, TARGET)  # type: ignore[arg-type]
    writer.restore(WriteModel(10_000, PARTITIONS, CHUNK), PARTITIONS, {})
    writer.write(fold(history(9, 30)))
    grown = SnapshotTarget(
        TARGET.topic, TARGET.event_topic, TARGET.event_topic_id, every_events=1, partitions=12
    )

    reader = Snapshots(topic, grown)  # type: ignore[arg-type]
    model = WriteModel(10_000, PARTITIONS, CHUNK)
    with pytest.raises(UnsafeTopic, match="now has 12 partitions") as info:
        reader.restore(model, PARTITIONS, topic.latest)

    assert "LEDGER_TOPIC" in str(info.value)
