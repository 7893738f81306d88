"""What the projector reports about itself: per-partition progress and counters.

The consumer thread and the event loop both update it, so every access holds a lock. Metrics
(a later `/metrics` endpoint) can read the same numbers through `report()`.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any


def lag(high_watermark: int, checkpoint: int | None, position: int | None) -> int:
    """How many offsets of a partition are still to be applied.

    `checkpoint` is the last applied offset (None: nothing yet), `position` the consumer's next
    offset to fetch, read while no batch is in flight (None: unknown). The high watermark counts
    every offset, including transaction markers, which are never delivered as records and so
    never become a checkpoint: a caught-up partition whose last offset is a commit marker would show
    a lag of 1 forever if we used the checkpoint alone. The consumer's position moves past such
    markers, and every record before it has been applied when no batch is in flight, so
    whichever of checkpoint + 1 and position is further is where applying has got to.
    """
    applied_up_to = 0 if checkpoint is None else checkpoint + 1
    if position is not None:
        applied_up_to = max(applied_up_to, position)
    return max(0, high_watermark - applied_up_to)


@dataclass(slots=True)
class PartitionProgress:
    checkpoint: int | None = None
    high_watermark: int | None = None
    position: int | None = None


class Status:
    def __init__(self, topic: str) -> None:
        self.topic = topic
        self._lock = threading.Lock()
        self._partitions: dict[int, PartitionProgress] = {}
        self._consuming = False
        self._events_applied = 0
        self._dead_letters = 0
        self._batches = 0

    @property
    def consuming(self) -> bool:
        with self._lock:
            return self._consuming

    def set_consuming(self, consuming: bool) -> None:
        with self._lock:
            self._consuming = consuming

    def assigned(self, checkpoints: Mapping[int, int | None]) -> None:
        """A rebalance gave us these partitions, whose checkpoints are as given."""
        with self._lock:
            for partition, checkpoint in checkpoints.items():
                self._partitions[partition] = PartitionProgress(checkpoint=checkpoint)

    def revoked(self, partitions: list[int]) -> None:
        with self._lock:
            for partition in partitions:
                self._partitions.pop(partition, None)

    def committed(self, checkpoints: Mapping[int, int], applied: int, dead_letters: int) -> None:
        with self._lock:
            self._batches += 1
            self._events_applied += applied
            self._dead_letters += dead_letters
            for partition, offset in checkpoints.items():
                progress = self._partitions.setdefault(partition, PartitionProgress())
                progress.checkpoint = offset

    def observed(self, partition: int, *, position: int | None, high_watermark: int | None) -> None:
        """The consumer's position (None while a batch is in flight) and the partition's high
        watermark."""
        with self._lock:
            progress = self._partitions.get(partition)
            if progress is not None:
                progress.position = position
                if high_watermark is not None:
                    progress.high_watermark = high_watermark

    def report(self) -> dict[str, Any]:
        with self._lock:
            partitions = {}
            for partition, progress in sorted(self._partitions.items()):
                high = progress.high_watermark
                partitions[str(partition)] = {
                    "checkpoint": progress.checkpoint,
                    "high_watermark": high,
                    "lag": None
                    if high is None
                    else lag(high, progress.checkpoint, progress.position),
                }
            return {
                "topic": self.topic,
                "consuming": self._consuming,
                "partitions": partitions,
                "events_applied": self._events_applied,
                "dead_letters": self._dead_letters,
                "batches": self._batches,
            }
