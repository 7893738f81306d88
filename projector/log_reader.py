"""Reading fixed ranges of the event topic (no consumer group): what a rebuild replays.

Blocking; the rebuild calls it from a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

from ledger.events.codec import EventCodec
from ledger.events.consuming import consume_ready
from projector.consumed import ConsumedRecord, consumed_records

_POLL_TIMEOUT = 0.5


class LogReader:
    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        codec: EventCodec,
        batch_max_events: int,
        stall_timeout: float = 120,
    ) -> None:
        self._topic = topic
        self._codec = codec
        self._batch_max = batch_max_events
        self._stall_timeout = stall_timeout
        self._consumer = Consumer(
            {
                **config,
                # The end of each partition shows up as an event, which tells us when we are done.
                "enable.partition.eof": True,
                "enable.auto.commit": False,
            }
        )
        self._ends: dict[int, int] = {}
        self._reached: dict[int, int] = {}

    def high_watermarks(self, timeout: float = 30) -> dict[int, int]:
        """Every partition's high watermark now (the offset after its last one)."""
        metadata = self._consumer.list_topics(self._topic, timeout=timeout)
        topic = metadata.topics.get(self._topic)
        if topic is None or topic.error is not None:
            raise KafkaException(topic.error if topic else f"no topic {self._topic!r}")
        return {
            partition: self._consumer.get_watermark_offsets(
                TopicPartition(self._topic, partition), timeout=timeout
            )[1]
            for partition in topic.partitions
        }

    def seek(self, starts: Mapping[int, int], ends: Mapping[int, int]) -> None:
        """Read each partition from `starts[p]` up to, not including, `ends[p]`."""
        self._ends = {p: end for p, end in ends.items() if end > starts.get(p, 0)}
        self._reached = {p: starts.get(p, 0) for p in self._ends}
        self._consumer.assign(
            [TopicPartition(self._topic, p, self._reached[p]) for p in sorted(self._ends)]
        )

    @property
    def position(self) -> int:
        """Offsets read so far, summed over partitions (for progress)."""
        return sum(self._reached.values())

    def next_batch(self) -> list[ConsumedRecord] | None:
        """The next records within the ranges, or None once every range is read."""
        deadline = time.monotonic() + self._stall_timeout
        while self._pending():
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"no progress reading {self._topic!r} for {self._stall_timeout:.0f}s; still "
                    f"at offsets {self._reached} of {self._ends} (an open transaction?)"
                )
            in_range = []
            for message in consume_ready(self._consumer, self._batch_max, _POLL_TIMEOUT):
                partition = message.partition() or 0
                offset = message.offset() or 0
                error = message.error()
                if error is not None:
                    if error.code() != KafkaError._PARTITION_EOF:
                        raise KafkaException(error)
                    # The end-of-partition event carries the position reached, which is past
                    # any transaction marker that ends the range.
                    self._advance(partition, offset)
                    continue
                self._advance(partition, offset + 1)
                if partition in self._ends and offset < self._ends[partition]:
                    in_range.append(message)
            if in_range:
                return consumed_records(self._codec, in_range)
        return None

    def _pending(self) -> bool:
        return any(self._reached[p] < end for p, end in self._ends.items())

    def _advance(self, partition: int, position: int) -> None:
        if partition in self._reached:
            reached = max(self._reached[partition], position)
            self._reached[partition] = min(reached, self._ends[partition])

    def close(self) -> None:
        self._consumer.close()
