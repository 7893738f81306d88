"""Reading fixed ranges of the event topic (no consumer group): what a rebuild replays.

Blocking; the rebuild calls it from a worker thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from confluent_kafka import Consumer

from ledger.events.codec import EventCodec
from ledger.events.consuming import ReadToEnd, high_watermarks
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
        self._range: ReadToEnd | None = None

    def high_watermarks(self, timeout: float = 30) -> dict[int, int]:
        """Every partition's high watermark now (the offset after its last one)."""
        return high_watermarks(self._consumer, self._topic, timeout=timeout)

    def seek(self, starts: Mapping[int, int], ends: Mapping[int, int]) -> None:
        """Read each partition from `starts[p]` up to, not including, `ends[p]`."""
        self._range = ReadToEnd(self._consumer, self._topic, starts, ends)

    @property
    def position(self) -> int:
        """Offsets read so far, summed over partitions (for progress)."""
        return 0 if self._range is None else sum(self._range.reached.values())

    def next_batch(self) -> list[ConsumedRecord] | None:
        """The next records within the ranges, or None once every range is read."""
        reading = self._range
        if reading is None:
            return None
        deadline = time.monotonic() + self._stall_timeout
        while records := reading.next_batch(deadline, self._batch_max, _POLL_TIMEOUT):
            in_range = []
            ends = reading.ends
            for message in records:
                partition = message.partition() or 0
                offset = message.offset() or 0
                reading.advance(partition, offset + 1)
                if offset < ends.get(partition, 0):
                    in_range.append(message)
            if in_range:
                return consumed_records(self._codec, in_range)
        return None

    def close(self) -> None:
        self._consumer.close()
