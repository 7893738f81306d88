"""Snapshots written on a thread while the model moves on: what lands is the model as captured."""

from __future__ import annotations

import threading
from collections.abc import Sequence

import pytest

from command_server.background_snapshots import BackgroundSnapshots
from command_server.event_store import AppendFailed, Fenced
from command_server.snapshots import Snapshots, SnapshotTarget
from command_server.write_model import WriteModel
from ledger.events.records import Event
from tests.eventually import eventually
from tests.unit.test_write_model_snapshots import (
    TARGET,
    CapturedTopic,
    answers,
    assert_same_answers,
    fold,
    fresh_writer,
    history,
    restored,
    small_chunks,
    tail,
)

__all__ = ["small_chunks"]  # the autouse fixture: many chunks from a short log

EVERY_50 = SnapshotTarget(TARGET.topic, TARGET.event_topic, TARGET.event_topic_id, every_events=50)


class HeldTopic(CapturedTopic):
    """A snapshot topic whose transactions wait until released, or fail as told."""

    def __init__(self) -> None:
        super().__init__()
        self.release = threading.Event()
        self.entered = threading.Event()
        self.failure: Exception | None = None
        self.closed = False

    def publish(self, topic: str, records: Sequence[tuple[str, bytes | None]]) -> None:
        self.entered.set()
        assert self.release.wait(10)
        if self.failure is not None:
            failure, self.failure = self.failure, None
            raise failure
        super().publish(topic, records)

    def close(self) -> None:
        self.closed = True


def _started(log: Sequence[tuple[Event, int, int]]) -> tuple[HeldTopic, WriteModel, Snapshots]:
    topic = HeldTopic()
    snapshots, model = fresh_writer(topic, target=EVERY_50)
    for event, partition, offset in log:
        model.apply(event, partition, offset)
    return topic, model, snapshots


def _settled(background: BackgroundSnapshots) -> None:
    eventually(lambda: not background.writing, interval=0.005, message="the snapshot written")


def test_the_model_moves_on_while_the_captured_snapshot_is_written() -> None:
    log = history(5, 300)
    cut = len(log) // 2
    topic, model, snapshots = _started(log[:cut])
    background = BackgroundSnapshots(snapshots)
    background.note(cut)
    assert background.due
    background.start(model)
    assert topic.entered.wait(10)
    # Batches go on while the transaction is held; no second snapshot starts meanwhile.
    for event, partition, offset in log[cut:]:
        model.apply(event, partition, offset)
    background.note(len(log) - cut)
    assert not background.due
    topic.release.set()
    _settled(background)

    # What landed is the model as it was at the cut, whatever it became since.
    again, start = restored(topic)
    assert tail(log, start) == log[cut:]
    for event, partition, offset in tail(log, start):
        again.apply(event, partition, offset)
    whole = fold(log)
    assert again.accounts == whole.accounts
    assert_same_answers(answers(again, log), answers(whole, log), log)

    background.write_final(model)
    final, start = restored(topic)
    assert tail(log, start) == []
    assert final.accounts == whole.accounts
    background.close()
    assert topic.closed


@pytest.mark.parametrize("failure", [AppendFailed("broker gone"), RuntimeError("bug")])
def test_a_failed_snapshot_is_written_whole_by_the_next_one(failure: Exception) -> None:
    log = history(8, 200)
    topic, model, snapshots = _started(log[:100])
    background = BackgroundSnapshots(snapshots)
    background.note(100)
    topic.failure = failure
    topic.release.set()
    background.start(model)
    _settled(background)
    assert topic.latest == {}
    assert not background.due  # waits for another 50 events
    for event, partition, offset in log[100:]:
        model.apply(event, partition, offset)
    background.note(len(log) - 100)
    assert background.due
    background.start(model)
    _settled(background)
    again, start = restored(topic)
    assert tail(log, start) == []
    assert again.accounts == fold(log).accounts
    background.close()


def test_a_fenced_snapshot_producer_stops_snapshots_for_good() -> None:
    log = history(9, 120)
    topic, model, snapshots = _started(log)
    background = BackgroundSnapshots(snapshots)
    background.note(len(log))
    topic.failure = Fenced("taken over")
    topic.release.set()
    background.start(model)
    _settled(background)
    background.note(1_000)
    assert not background.due
    background.write_final(model)
    assert topic.latest == {}
    background.close()
