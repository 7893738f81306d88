"""ReadToEnd: a partition is done once an end-of-partition event reports its end, which in a
transactional topic lies past the last record (a commit marker)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from confluent_kafka import KafkaError, KafkaException

from ledger.events.consuming import EndNotReached, ReadToEnd


class FakeMessage:
    def __init__(self, partition: int, offset: int, error: KafkaError | None = None) -> None:
        self._partition = partition
        self._offset = offset
        self._error = error

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset

    def error(self) -> KafkaError | None:
        return self._error

    def __repr__(self) -> str:
        return f"{self._partition}@{self._offset}"


def record(partition: int, offset: int) -> FakeMessage:
    return FakeMessage(partition, offset)


def end_of(partition: int, position: int) -> FakeMessage:
    return FakeMessage(partition, position, KafkaError(KafkaError._PARTITION_EOF))


class FakeConsumer:
    """Hands out the queued polls one by one; assign() is recorded."""

    def __init__(self, polls: list[list[FakeMessage]]) -> None:
        self.polls = [list(poll) for poll in polls]
        self.assigned: list[tuple[int, int]] = []

    def assign(self, partitions: list[Any]) -> None:
        self.assigned = [(tp.partition, tp.offset) for tp in partitions]

    def poll(self, timeout: float) -> FakeMessage | None:
        if not self.polls or not self.polls[0]:
            if self.polls:
                self.polls.pop(0)
            return None
        return self.polls[0].pop(0)

    def consume(self, num_messages: int, timeout: float) -> list[FakeMessage]:
        taken, rest = self.polls[0][:num_messages], self.polls[0][num_messages:]
        self.polls.pop(0)
        if rest:
            self.polls.insert(0, rest)
        return taken


def _reader(polls: list[list[FakeMessage]], starts: dict[int, int], ends: dict[int, int]) -> Any:
    consumer = FakeConsumer(polls)
    return consumer, ReadToEnd(consumer, "t", starts, ends)  # type: ignore[arg-type]


def test_only_partitions_with_something_after_their_start_are_read() -> None:
    consumer, reader = _reader([], {0: 5, 1: 2}, {0: 5, 1: 9, 2: 0})
    assert consumer.assigned == [(1, 2)]
    assert reader.ends == {1: 9}


def test_nothing_to_read_is_done_at_once() -> None:
    _, reader = _reader([], {}, {0: 0})
    assert reader.done
    assert reader.next_batch(time.monotonic()) == []


def test_records_are_returned_and_the_end_of_partition_past_the_commit_marker_ends_it() -> None:
    # Records 0-2, a commit marker at 3: the end (high watermark) is 4.
    batch = [record(0, 0), record(0, 1), record(0, 2)]
    _, reader = _reader([batch, [end_of(0, 4)]], {}, {0: 4})

    assert [list(b) for b in reader.batches(time.monotonic() + 5)] == [batch]
    assert reader.done
    assert reader.reached == {0: 4}


def test_an_end_of_partition_short_of_the_end_does_not_end_it() -> None:
    # The last transaction's marker is not written yet: the consumer stops at 2 for now.
    polls = [[record(0, 0), end_of(0, 2)], [record(0, 2), end_of(0, 4)]]
    _, reader = _reader(polls, {}, {0: 4})

    first = reader.next_batch(time.monotonic() + 5)
    assert [m.offset() for m in first] == [0]
    assert not reader.done
    assert reader.reached == {0: 2}
    assert [m.offset() for m in reader.next_batch(time.monotonic() + 5)] == [2]
    assert reader.next_batch(time.monotonic() + 5) == []


def test_every_partition_must_reach_its_end() -> None:
    polls = [[record(0, 0), end_of(0, 2)], [record(1, 0), end_of(1, 2)]]
    _, reader = _reader(polls, {}, {0: 2, 1: 2})

    batches = list(reader.batches(time.monotonic() + 5))

    assert [[(m.partition(), m.offset()) for m in b] for b in batches] == [[(0, 0)], [(1, 0)]]


def test_a_caller_may_count_records_it_has_seen_as_progress() -> None:
    _, reader = _reader([], {}, {0: 3})
    reader.advance(0, 2)
    assert (reader.reached, reader.done) == ({0: 2}, False)
    reader.advance(0, 1)  # never backwards
    assert reader.reached == {0: 2}
    reader.advance(0, 3)
    assert reader.done
    reader.advance(7, 1)  # not read: ignored
    assert reader.reached == {0: 3}


def test_other_errors_are_raised() -> None:
    broken = FakeMessage(0, 0, KafkaError(KafkaError.UNKNOWN_TOPIC_OR_PART))
    _, reader = _reader([[broken]], {}, {0: 1})
    with pytest.raises(KafkaException):
        reader.next_batch(time.monotonic() + 5)


def test_the_deadline_names_the_partitions_short_of_their_end() -> None:
    _, reader = _reader([[end_of(0, 1)]], {}, {0: 2})
    with pytest.raises(EndNotReached, match=r"partitions \[0\]: at offsets \{0: 1\} of \{0: 2\}"):
        reader.next_batch(time.monotonic() + 0.05, wait=0.01)
