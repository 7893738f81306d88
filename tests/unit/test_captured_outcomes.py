"""Captures that extend the growing outcome chunks (captured_outcomes.py) and write the accounts
the fold marked changed, against a fresh rebuild (`WriteModel.chunk`) and a whole fold."""

from __future__ import annotations

import random
from collections.abc import Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from command_server.captured_outcomes import CapturedOutcomes, GrowingChunk, joined
from command_server.snapshot_format import encode
from command_server.snapshots import Capture, Snapshots
from command_server.write_model import WriteModel
from ledger.events.records import Event
from tests.unit.test_write_model_snapshots import (
    CHUNK,
    PARTITIONS,
    TARGET,
    CapturedTopic,
    answers,
    assert_same_answers,
    fold,
    history,
    restored,
    small_chunks,
    tail,
)

__all__ = ["small_chunks"]  # the autouse fixture: many account chunks from a few accounts

Log = list[tuple[Event, int, int]]


def batches(log: Log, rng: random.Random, whole_commands: bool = False) -> list[Log]:
    """The log cut at random, anywhere (a transfer's two events then sometimes in two batches,
    as a refund comes after its debit) or only between commands (as transactions are)."""
    places = [
        at
        for at in range(1, len(log))
        if not whole_commands or log[at][0].command_id != log[at - 1][0].command_id
    ]
    cuts = sorted(rng.sample(places, min(len(places), len(log) // 4)))
    return [log[a:b] for a, b in zip([0, *cuts], [*cuts, len(log)], strict=True)]


def assert_captured_as_rebuilt(
    captured: CapturedOutcomes, model: WriteModel, rng: random.Random
) -> None:
    """One capture: the chunks a snapshot would ask for (of some partitions), extended, are
    what a rebuild gives."""
    captured.begin(model)
    for partition, log in model.logs.items():
        if rng.random() < 0.2:
            continue  # unchanged since its last snapshot: not asked for
        for number in range(log.start // CHUNK, -(-log.end // CHUNK)):
            first = number * CHUNK
            pieces = captured.chunk(model, partition, number)
            assert joined(pieces) == model.chunk(partition, first, first + CHUNK), (
                partition,
                number,
            )


@settings(max_examples=40, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    window=st.sampled_from([10_000, 40, 7]),
    reuse=st.sampled_from([0.0, 0.05, 0.3]),
    cut=st.floats(0.2, 0.9),
    asked=st.floats(0.0, 1.0),
    every=st.floats(0.1, 1.0),
)
def test_extended_chunks_equal_a_rebuild(
    seed: int, window: int, reuse: float, cut: float, asked: float, every: float
) -> None:
    """Random batches (transfers split across them, ids used again), forgets (small windows),
    captures now and then, a restart from a snapshot (restored answers, some asked for since)
    and the same capturer given the new model: every capture equal to a rebuild."""
    rng = random.Random(seed)
    log = history(seed, 150, reuse)
    captured = CapturedOutcomes()
    model = WriteModel(window, PARTITIONS, CHUNK)
    topic = CapturedTopic()
    writer = Snapshots(topic, TARGET)  # type: ignore[arg-type]
    writer.restore(model, PARTITIONS, {})
    head = log[: int(len(log) * cut)]
    for batch in batches(head, rng):
        for event, partition, offset in batch:
            model.apply(event, partition, offset)
        if rng.random() < every:
            assert_captured_as_rebuilt(captured, model, rng)
    writer.write(model)

    again, start = restored(topic, window)
    for event, _, _ in log:
        if rng.random() < asked:
            again.outcome(event.command_id)
    assert_captured_as_rebuilt(captured, again, rng)
    for batch in batches(tail(log, start), rng):
        for event, partition, offset in batch:
            again.apply(event, partition, offset)
        if rng.random() < every:
            if rng.random() < asked:
                again.outcome(rng.choice(log)[0].command_id)
            assert_captured_as_rebuilt(captured, again, rng)
    assert_captured_as_rebuilt(captured, again, rng)


class FlakyTopic(CapturedTopic):
    """A snapshot topic whose transactions fail when told to."""

    def __init__(self) -> None:
        super().__init__()
        self.fail = False

    def publish(self, topic: str, records: Sequence[tuple[str, bytes | None]]) -> None:
        if self.fail:
            raise RuntimeError("transaction aborted")
        super().publish(topic, records)


def _encoded(capture: Capture) -> list[tuple[str, bytes | None]]:
    return [
        (
            key,
            None
            if body is None
            else encode(body.body() if isinstance(body, GrowingChunk) else body),
        )
        for key, body in capture.records
    ]


@settings(max_examples=25, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    window=st.sampled_from([10_000, 40]),
    failures=st.floats(0.0, 0.5),
)
def test_snapshots_with_failed_transactions_restore_the_whole_fold(
    seed: int, window: int, failures: float
) -> None:
    """Captures now and then, some of whose transactions fail (what they would have written
    is written by a later one), and a capture's records unchanged by what is folded after it:
    a restart from the topic plus the tail gives the whole fold."""
    rng = random.Random(seed)
    log = history(seed, 200, 0.0)
    topic = FlakyTopic()
    writer = Snapshots(topic, TARGET)  # type: ignore[arg-type]
    model = WriteModel(window, PARTITIONS, CHUNK)
    writer.restore(model, PARTITIONS, {})
    pending: tuple[Capture, list[tuple[str, bytes | None]]] | None = None
    for batch in batches(log, rng, whole_commands=True):
        for event, partition, offset in batch:
            model.apply(event, partition, offset)
        if pending is not None:
            # Written on the snapshot thread while the model moved on: the same bytes.
            capture, encoded = pending
            assert _encoded(capture) == encoded
            topic.fail = rng.random() < failures
            try:
                size = writer.publish(capture)
            except RuntimeError:
                pass
            else:
                writer.recorded(capture, size)
            pending = None
        if rng.random() < 0.3:
            capture_ = writer.capture(model)
            if capture_ is not None:
                pending = capture_, _encoded(capture_)
    topic.fail = False
    writer.write(model)

    again, start = restored(topic, window)
    assert tail(log, start) == []
    whole = fold(log, window)
    assert again.accounts == whole.accounts
    assert again.horizons == whole.horizons
    assert_same_answers(answers(again, log), answers(whole, log), log)


def test_a_capture_writes_only_the_accounts_folded_into_since_the_last_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr("command_server.snapshots._REWRITE_AFTER", 100)
    log = history(5, 120, 0.0)
    topic = FlakyTopic()
    writer = Snapshots(topic, TARGET)  # type: ignore[arg-type]
    model = WriteModel(10_000, PARTITIONS, CHUNK)
    writer.restore(model, PARTITIONS, {})
    for event, partition, offset in log[:60]:
        model.apply(event, partition, offset)
    writer.write(model)
    for event, partition, offset in log[60:64]:
        model.apply(event, partition, offset)
    first = writer.capture(model)
    assert first is not None
    topic.fail = True
    with pytest.raises(RuntimeError):
        writer.publish(first)
    for event, partition, offset in log[64:66]:
        model.apply(event, partition, offset)
    second = writer.capture(model)
    assert second is not None

    written = {
        account.account_id
        for _, body in second.records
        for account in getattr(body, "accounts", [])
    }
    # Those of the failed snapshot too, and nothing else.
    assert written == {e.account_id for e, _, _ in log[60:66]}
    assert {a: model.accounts[a] for a in written} == {
        a: fold(log[:66]).accounts[a] for a in written
    }


def test_a_model_the_writer_did_not_restore_gets_every_account_written() -> None:
    """Until a snapshot of it is written, even when the first one fails."""
    log = history(6, 60, 0.0)
    topic = FlakyTopic()
    writer = Snapshots(topic, TARGET)  # type: ignore[arg-type]
    writer.restore(WriteModel(10_000, PARTITIONS, CHUNK), PARTITIONS, {})
    writer.write(fold(log[:30]))
    other = fold(log)
    other.take_changed_accounts()
    failed = writer.capture(other)
    assert failed is not None
    topic.fail = True
    with pytest.raises(RuntimeError):
        writer.publish(failed)
    # The next snapshot of the same model still writes every account.
    topic.fail = False
    writer.write(other)

    again, start = restored(topic)
    assert tail(log, start) == []
    assert again.accounts == other.accounts


def test_a_model_without_snapshots_keeps_no_changes() -> None:
    """What only snapshots read is kept once they first take it, not before."""
    log = history(7, 40, 0.0)
    model = fold(log[:20])
    assert model.changed_accounts is None
    assert model.recorded_again is None
    assert model.take_changed_accounts() == {}
    CapturedOutcomes().begin(model)
    for event, partition, offset in log[20:]:
        model.apply(event, partition, offset)
    changed = model.take_changed_accounts()
    assert set().union(*changed.values()) == {e.account_id for e, _, _ in log[20:]}
    assert model.take_changed_accounts() == {}
