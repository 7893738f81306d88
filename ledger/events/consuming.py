"""Reading a Kafka log to its end without waiting for records that will not come."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from ledger.kafka_security import KafkaSecurity


def consume_ready(consumer: Consumer, most: int, wait: float) -> list[Message]:
    """Up to `most` messages (partition-EOF events included): waits up to `wait` seconds for
    the first, then takes only what is already fetched.

    `Consumer.consume(most, wait)` returns early only once it has `most` messages, so the last
    call of every read to the end of a log (a replay, a snapshot read, a rebuild) waited the
    whole timeout: half a second of every command-server start, twice.
    """
    if most < 1:
        raise ValueError(f"most must be at least 1, not {most}")
    first = consumer.poll(wait)
    if first is None:
        return []
    if most == 1:
        return [first]
    return [first, *consumer.consume(most - 1, 0)]


def read_to_end_config(
    bootstrap: str,
    group_id: str,
    isolation: str = "read_committed",
    security: KafkaSecurity = KafkaSecurity(),  # noqa: B008 (frozen, so safe to share)
) -> dict[str, Any]:
    """A consumer for ReadToEnd: assigned, never committing, told of each partition's end, and
    fetching in large batches (a replay reads millions of small records)."""
    reading = {"isolation.level": isolation, "enable.partition.eof": True}
    fetching = {"fetch.max.bytes": 64 << 20, "max.partition.fetch.bytes": 16 << 20}
    return {
        **security.config(),
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "enable.auto.commit": False,
        "auto.offset.reset": "earliest",
        **reading,
        **fetching,
        # The end of a partition shows only in the fetch after the last data, which the broker
        # holds up to this long (librdkafka: 500 ms): paid once per read otherwise.
        "fetch.wait.max.ms": 10,
    }


class EndNotReached(TimeoutError):
    """A read to the end of a log was not done by its deadline (a transaction left open?)."""


def high_watermarks(
    consumer: Consumer, topic: str, partitions: Iterable[int] | None = None, timeout: float = 30
) -> dict[int, int]:
    """Each partition's end now (the offset after its last record or marker); every partition
    of `topic` when `partitions` is None."""
    if partitions is None:
        metadata = consumer.list_topics(topic, timeout=timeout)
        found = metadata.topics.get(topic)
        if found is None or found.error is not None:
            raise KafkaException(found.error if found else f"no topic {topic!r}")
        partitions = found.partitions
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=timeout)[1]
        for p in partitions
    }


class ReadToEnd:
    """Reads partitions of a topic from start offsets up to ends, in batches of records.

    The consumer must have `enable.partition.eof` on: in a transactional topic the last offset
    is a commit marker, which no record reports, so a partition is done only once its
    end-of-partition event reports a position at or past its end. Records are returned as
    they come, each batch in the consumer's order; what to do with them is the caller's.
    """

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        starts: Mapping[int, int],
        ends: Mapping[int, int],
    ) -> None:
        self._consumer = consumer
        self.topic = topic
        self.ends = {p: end for p, end in ends.items() if end > starts.get(p, 0)}
        """The partitions to read (those with something after their start), and their ends."""
        self.reached = {p: starts.get(p, 0) for p in self.ends}
        """How far each partition is known to be read (at most its end)."""
        self._pending = set(self.ends)
        consumer.assign([TopicPartition(topic, p, self.reached[p]) for p in sorted(self.ends)])

    @property
    def done(self) -> bool:
        return not self._pending

    def advance(self, partition: int, position: int) -> None:
        """`partition` is read up to `position` (what an end-of-partition event reports, or
        the offset after a record the caller has seen)."""
        end = self.ends.get(partition)
        if end is None:
            return
        if position >= end:
            self.reached[partition] = end
            self._pending.discard(partition)
        elif position > self.reached[partition]:
            self.reached[partition] = position

    def records(self, messages: list[Message]) -> list[Message]:
        """The records among `messages`, the end-of-partition events taken into account;
        any other error is raised."""
        records = [m for m in messages if m.error() is None]
        if len(records) != len(messages):
            for message in messages:
                error = message.error()
                if error is None:
                    continue
                if error.code() != KafkaError._PARTITION_EOF:
                    raise KafkaException(error)
                self.advance(message.partition() or 0, message.offset() or 0)
        return records

    def next_batch(self, deadline: float, most: int = 10_000, wait: float = 0.5) -> list[Message]:
        """The next records (up to `most`), or [] once every partition reached its end; raises
        EndNotReached at `deadline` (time.monotonic())."""
        while self._pending:
            if time.monotonic() > deadline:
                short = sorted(self._pending)
                reached = {p: self.reached[p] for p in short}
                ends = {p: self.ends[p] for p in short}
                raise EndNotReached(
                    f"reading {self.topic!r} did not reach the end of partitions {short}: "
                    f"at offsets {reached} of {ends}"
                )
            records = self.records(consume_ready(self._consumer, most, wait))
            if records:
                return records
        return []

    def batches(
        self, deadline: float, most: int = 10_000, wait: float = 0.5
    ) -> Iterator[list[Message]]:
        """Every batch up to the ends (see `next_batch`)."""
        while batch := self.next_batch(deadline, most, wait):
            yield batch
