"""Applied offsets committed to Kafka for lag tools: a commit that failed, for some partitions
or as a whole, or that could not be sent, is kept for the next one."""

from __future__ import annotations

from dataclasses import dataclass

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from projector.lag_offsets import LagOffsets
from tests.unit.feed_fakes import FakeConsumer


def _sent_offsets_10_and_6() -> tuple[FakeConsumer, LagOffsets]:
    """Lag offsets of partitions 0 and 1 that have sent their offsets 10 and 6 to Kafka."""
    consumer = FakeConsumer()
    lag = LagOffsets("events")
    lag.applied({0: 10, 1: 6})
    lag.commit(consumer)  # type: ignore[arg-type]
    return consumer, lag


def test_applied_offsets_are_sent_once_and_the_next_commit_waits_for_the_interval() -> None:
    consumer, lag = _sent_offsets_10_and_6()
    assert consumer.committed == [11, 7]
    assert not lag.due

    lag.commit(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [11, 7]


def test_a_failed_offset_commit_is_sent_again_unless_overtaken() -> None:
    consumer, lag = _sent_offsets_10_and_6()
    failed = KafkaError(KafkaError.REBALANCE_IN_PROGRESS)

    lag.on_commit(failed, [TopicPartition("events", 0, 11), TopicPartition("events", 1, 7)])
    lag.commit(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [11, 7, 11, 7]

    # Partition 0 sent a later offset, partition 1 was revoked: neither failure is sent again.
    lag.applied({0: 20})
    lag.commit(consumer)  # type: ignore[arg-type]
    lag.forget([1])
    consumer.committed.clear()
    lag.on_commit(failed, [TopicPartition("events", 0, 11), TopicPartition("events", 1, 7)])
    lag.commit(consumer)  # type: ignore[arg-type]
    assert consumer.committed == []


@dataclass
class PartitionCommitted:
    """A partition as `on_commit` gets it (a TopicPartition's `error` cannot be set)."""

    partition: int
    offset: int
    error: KafkaError | None = None


def test_offsets_whose_commit_failed_for_their_partition_or_at_once_are_sent_again() -> None:
    consumer, lag = _sent_offsets_10_and_6()

    # The commit as a whole succeeded; partition 1's did not.
    answers = [
        PartitionCommitted(0, 11),
        PartitionCommitted(1, 7, KafkaError(KafkaError.REBALANCE_IN_PROGRESS)),
    ]
    lag.on_commit(None, answers)  # type: ignore[arg-type]
    lag.commit(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [11, 7, 7]

    # The commit could not even be sent: its offsets go with the next one.
    consumer.refuse = KafkaException(KafkaError(KafkaError._STATE))
    lag.applied({0: 20})
    lag.commit(consumer)  # type: ignore[arg-type]
    consumer.refuse = None
    lag.commit(consumer)  # type: ignore[arg-type]
    assert consumer.committed == [11, 7, 7, 21]
