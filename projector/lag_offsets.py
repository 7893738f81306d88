"""Applied offsets committed to Kafka's consumer group, only so that lag tools see them.

PostgreSQL's checkpoints are what the projector resumes from (docs/design.md, decision 5);
these commits are a report, so a commit that fails is not an error: its offsets go with the
next one. They are sent at most once per interval rather than per batch, because live batches
are often a single event and each commit is a request and a log append for the broker.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Collection, Mapping

from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

log = logging.getLogger(__name__)

COMMIT_INTERVAL_S = 1.0


class LagOffsets:
    """The offsets applied since the last commit to Kafka, and those sent and not yet answered.

    Used on the consumer's thread only: `on_commit` runs inside its poll.
    """

    def __init__(self, topic: str, interval: float = COMMIT_INTERVAL_S) -> None:
        self._topic = topic
        self._interval = interval
        self._next_commit = 0.0
        self._uncommitted: dict[int, int] = {}
        """The last applied offset per partition, not yet sent."""
        self._sent: dict[int, int] = {}
        """The last applied offset sent to Kafka per partition."""

    def applied(self, checkpoints: Mapping[int, int]) -> None:
        """A batch committed these partitions' last applied offsets to the read model."""
        self._uncommitted.update(checkpoints)

    @property
    def due(self) -> bool:
        return time.monotonic() >= self._next_commit

    def commit(self, consumer: Consumer) -> None:
        """Send what was applied since the last commit (asynchronously: `on_commit` hears)."""
        self._next_commit = time.monotonic() + self._interval
        if not self._uncommitted:
            return
        offsets = [
            TopicPartition(self._topic, partition, offset + 1)
            for partition, offset in self._uncommitted.items()
        ]
        try:
            consumer.commit(offsets=offsets, asynchronous=True)
        except KafkaException as error:
            # Kept for the next commit, as a commit that failed later is (on_commit).
            log.debug("could not commit offsets to Kafka (only used for lag tools): %s", error)
            return
        self._sent.update(self._uncommitted)
        self._uncommitted.clear()

    def on_commit(self, error: KafkaError | None, partitions: list[TopicPartition]) -> None:
        """The consumer's `on_commit`: a failed commit is sent again with the next one, or an
        idle partition would show stale lag until its next event; unless a later offset was
        sent or is pending by then, or the partition is no longer ours. A commit can also
        succeed as a whole and fail for some partitions."""
        failed = partitions if error is not None else [tp for tp in partitions if tp.error]
        if not failed:
            return
        reason = error if error is not None else failed[0].error
        log.debug("offset commit to Kafka failed (only used for lag tools): %s", reason)
        for tp in failed:
            if self._sent.get(tp.partition) == tp.offset - 1:
                self._uncommitted.setdefault(tp.partition, tp.offset - 1)

    def forget(self, partitions: Collection[int]) -> None:
        """The partitions are no longer ours: their offsets are another instance's to commit."""
        for partition in partitions:
            self._uncommitted.pop(partition, None)
            self._sent.pop(partition, None)
