"""WriteModel.chunk's column-wise answers against the answers taken entry by entry, and the
floor in seconds between snapshots."""

from __future__ import annotations

import random
import time
from array import array

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from command_server.outcome_log import OutcomeColumns
from command_server.snapshots import Snapshots, SnapshotTarget
from command_server.write_model import Outcome, WriteModel
from tests.unit.test_write_model_snapshots import (
    CHUNK,
    PARTITIONS,
    TARGET,
    CapturedTopic,
    fold,
    fresh_writer,
    history,
    restored,
    tail,
)


def chunk_entry_by_entry(model: WriteModel, partition: int, first: int, end: int) -> OutcomeColumns:
    """What WriteModel.chunk answered before it took the answers column-wise."""
    log = model.logs[partition]
    answers = [answer(model, model._index.get(log.command_id(at))) for at in log.span(first, end)]
    versions = array("q", (version for version, _ in answers))
    return log.columns(log.span(first, end), versions, [token for _, token in answers])


def answer(model: WriteModel, entry: Outcome | tuple[int, int] | None) -> tuple[int, str]:
    if entry is None:
        # A transfer whose other event was forgotten in its partition.
        return 0, ""
    if isinstance(entry, Outcome):
        return entry.version, entry.token
    # Restored and never asked for.
    return model.logs[entry[0]].answer(entry[1])


def assert_chunks_as_entry_by_entry(model: WriteModel, rng: random.Random) -> None:
    for partition, log in model.logs.items():
        ranges = [
            (c * CHUNK, (c + 1) * CHUNK) for c in range(log.start // CHUNK, log.end // CHUNK + 1)
        ]
        ranges.append((rng.randrange(log.end + 1), rng.randrange(log.end + 2)))
        for first, end in ranges:
            assert model.chunk(partition, first, end) == chunk_entry_by_entry(
                model, partition, first, end
            )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    window=st.sampled_from([10_000, 40, 7]),
    cut=st.floats(0.1, 1.0),
    asked=st.floats(0.0, 1.0),
)
def test_chunks_answer_as_entry_by_entry(seed: int, window: int, cut: float, asked: float) -> None:
    """Live outcomes, outcomes restored from a snapshot and never asked for, some asked for
    since, transfers forgotten in one partition: the same columns either way."""
    rng = random.Random(seed)
    log = history(seed, 120)
    assert_chunks_as_entry_by_entry(fold(log, window), rng)
    topic = CapturedTopic()
    writer, model = fresh_writer(topic, window)
    for event, partition, offset in log[: int(len(log) * cut)]:
        model.apply(event, partition, offset)
    writer.write(model)
    again, start = restored(topic, window)
    for event, _, _ in log:
        if rng.random() < asked:
            again.outcome(event.command_id)
    assert_chunks_as_entry_by_entry(again, rng)
    for event, partition, offset in tail(log, start):
        again.apply(event, partition, offset)
    assert_chunks_as_entry_by_entry(again, rng)


def test_snapshots_wait_for_the_floor_in_seconds_as_well_as_the_events(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    clock = [1_000.0]
    monkeypatch.setattr(time, "monotonic", lambda: clock[0])
    paced = SnapshotTarget(
        TARGET.topic, TARGET.event_topic, TARGET.event_topic_id, every_events=5, min_seconds=2
    )
    writer = Snapshots(CapturedTopic(), paced)  # type: ignore[arg-type]
    model = WriteModel(10_000, PARTITIONS, CHUNK)
    writer.restore(model, PARTITIONS, {})
    writer.note(4)
    assert not writer.due
    writer.note(1)
    assert writer.due  # the first one: no snapshot before it
    writer.write(fold(history(1, 10)))
    writer.note(50)
    clock[0] += 1.9
    assert not writer.due
    clock[0] += 0.1
    assert writer.due
    writer.capture(model)
    clock[0] += 5
    writer.note(4)
    assert not writer.due  # long enough, but too few events
