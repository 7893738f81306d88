"""The Kafka side of the live projector: a group consumer on its own thread.

librdkafka's consumer blocks, so it runs on a dedicated thread that hands each batch to the event
loop. One batch is in flight at a time: the thread decodes and projects the next one
(prediction.py) while PostgreSQL applies it, across polls too when catching up, since the next
poll's records are already fetched; a live batch is waited for before the next poll, once the
records already fetched are decoded.
Rebalance callbacks run inside poll/consume on this thread, and the revocation ones finish the
batch in flight first, so no batch is in flight when partitions go (records of theirs that
the same call returned are dropped); on assignment we read the partitions' checkpoints from
PostgreSQL and resume right after them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from concurrent.futures import Future
from typing import Any

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from ledger.events.codec import EventCodec
from ledger.events.consuming import consume_ready
from ledger.kafka_security import KafkaSecurity
from projector.batch import BatchResult
from projector.consumed import ConsumedRecord, consumed_records
from projector.lag_offsets import LagOffsets
from projector.prediction import AccountView, Prediction
from projector.status import Status

log = logging.getLogger(__name__)

_POLL_TIMEOUT = 0.5
_RETRY_DELAY_MAX = 5.0
_BATCHES_PER_POLL = 4
"""How many batches one poll may take when that many records are queued (catching up)."""

ApplyBatch = Callable[[Sequence[ConsumedRecord], Prediction | None], "Future[BatchResult]"]
"""Starts applying a batch (with what it is predicted to write, if that could be said); the
future says what it did once its transaction committed."""
ReadCheckpoints = Callable[[Collection[int]], Mapping[int, int]]
"""The last applied offset of each of the given partitions that has one (blocking)."""


class FeedFailed(RuntimeError):
    """Kafka reported an error the projector cannot continue after."""


def consumer_config(
    bootstrap: str,
    group_id: str,
    session_timeout_ms: int | None = None,
    security: KafkaSecurity = KafkaSecurity(),  # noqa: B008 (frozen, so safe to share)
) -> dict[str, Any]:
    config: dict[str, Any] = {
        **security.config(),
        "bootstrap.servers": bootstrap,
        "group.id": group_id,
        "client.id": "ledger-projector",
        # librdkafka's own lines go through our logging (structured, JSON on request).
        "logger": logging.getLogger("projector.kafka"),
        # Never see events of aborted or still open transactions (docs/design.md, decision 5).
        "isolation.level": "read_committed",
        # PostgreSQL's checkpoints say where to resume; Kafka's offsets are only for lag tools
        # (lag_offsets.py).
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        # An offset outside the log means events we have not applied are gone (or the topic was
        # recreated): stop rather than silently jump to either end.
        "auto.offset.reset": "error",
        "fetch.max.bytes": 64 * 1024 * 1024,
        "max.partition.fetch.bytes": 8 * 1024 * 1024,
        # How long the broker may hold a fetch while it has nothing new: a transaction's commit
        # can land in that wait, and readers waiting on a consistency token would wait with it
        # (librdkafka's default is 500 ms).
        "fetch.wait.max.ms": 20,
    }
    if session_timeout_ms is not None:
        config["session.timeout.ms"] = session_timeout_ms
    return config


class Feed:
    def __init__(
        self,
        config: Mapping[str, Any],
        topic: str,
        codec: EventCodec,
        batch_max_events: int,
        *,
        apply_batch: ApplyBatch,
        read_checkpoints: ReadCheckpoints,
        status: Status,
        new_consumer: Callable[[dict[str, Any]], Consumer] = Consumer,
    ) -> None:
        self._config = dict(config)
        self._new_consumer = new_consumer
        self._topic = topic
        self._codec = codec
        self._batch_max = batch_max_events
        self._apply_batch = apply_batch
        self._read_checkpoints = read_checkpoints
        self._status = status
        self._stopping = threading.Event()
        self._view = AccountView()
        self._lag = LagOffsets(topic)
        self._assigned: set[int] = set()
        self._in_flight: Future[BatchResult] | None = None
        self._ahead: dict[int, tuple[Message, ConsumedRecord]] = {}
        """Records decoded while the batch before them committed (`_decode_ahead`), by the id
        of their message (kept beside it, so that the id cannot be another message's)."""
        self._failed: BaseException | None = None
        """What the batch in flight raised, if a rebalance callback found out: kept so that
        the callback still commits and forgets its partitions, and raised once the poll that
        ran it returns."""

    def stop(self) -> None:
        """Finish the batch in hand, then leave the group (thread-safe)."""
        self._stopping.set()

    @property
    def stopping(self) -> bool:
        return self._stopping.is_set()

    def run(self) -> None:
        """Consume and apply until `stop()`; raises whatever stops it otherwise."""
        if self._stopping.is_set():
            return  # told to stop before it began: not even joining the group
        consumer = self._new_consumer({**self._config, "on_commit": self._lag.on_commit})
        try:
            consumer.subscribe(
                [self._topic],
                on_assign=self._on_assign,
                on_revoke=self._on_revoke,
                on_lost=self._on_lost,
            )
            self._status.set_consuming(True)
            while not self._stopping.is_set():
                if not self._apply_in_order(self._next_messages(consumer)):
                    break
                self._observe(consumer)
                # Polls time out every _POLL_TIMEOUT, so an idle projector commits too.
                if self._lag.due:
                    self._lag.commit(consumer)
            self._finish_in_flight()
        except BaseException:
            # The batch in flight still runs: end its retries (the database may be what failed)
            # and let it finish before the consumer goes, without its outcome hiding this error.
            self._stopping.set()
            self._finish_before_rebalance()
            if self._failed is not None:
                log.error("the batch in flight failed too: %r", self._failed)
            raise
        finally:
            self._status.set_consuming(False)
            self._lag.commit(consumer)
            # Leaves the group at once, so the partitions move to another instance now rather
            # than after the session timeout.
            consumer.close()

    def _apply_in_order(self, messages: Sequence[Message]) -> bool:
        """Apply `messages` as batches of at most `batch_max_events`, one transaction each, in
        order, decoding and projecting each batch while the previous one is applied. If there
        are a batch's worth or more (catching up: the next poll's records are already fetched),
        the last one is left in flight; fewer (live) are waited for, as live records are better
        sent together with those that arrive meanwhile. False if told to stop (later batches
        are left for the next run)."""
        for start in range(0, len(messages), self._batch_max):
            records = self._decoded(messages[start : start + self._batch_max])
            prediction = self._view.predict(self._topic, records) if records else None
            # Raises what the batch raised (a contradiction): nothing later is applied.
            held = self._finish_in_flight()
            if held is False and records:
                # Built on a prediction that did not hold (or none): predict again from what
                # that batch committed.
                prediction = self._view.predict(self._topic, records)
            if records is None or (start and self._stopping.is_set()):
                return False
            if records:
                self._in_flight = self._apply_batch(records, prediction)
                self._view.sent(prediction)
        self._ahead = {}
        if not self._catching_up(messages):
            self._finish_in_flight()
        return True

    def _catching_up(self, messages: Sequence[Message]) -> bool:
        """A batch's worth or more at once: the log is ahead of us and the next poll's records
        are already fetched, so a batch may stay in flight across it. Fewer are live records,
        better sent together with those that arrive while the batch in flight commits."""
        return len(messages) >= self._batch_max

    def _finish_in_flight(self) -> bool | None:
        """Wait for the batch in flight, if any, and take in what it committed: whether its
        prediction held (None: no batch was in flight). Raises what the batch raised."""
        in_flight, self._in_flight = self._in_flight, None
        if in_flight is None:
            return None
        result = in_flight.result()
        self._lag.applied(result.checkpoints)
        return self._view.settle(result)

    def _finish_before_rebalance(self) -> None:
        try:
            self._finish_in_flight()
        except Exception as error:
            self._failed = error

    def _next_messages(self, consumer: Consumer) -> list[Message]:
        """The next records of our partitions.

        While a batch is in flight, what is already fetched: a batch's worth or more
        (catching up) is decoded while that batch applies. With less, the batch is finished
        first and what arrived while it committed is taken too, so that those records go in
        the next batch rather than the one after it. With nothing fetched, the poll waits up to
        _POLL_TIMEOUT.
        """
        most = self._batch_max * _BATCHES_PER_POLL
        polled = consume_ready(consumer, most, 0) if self._in_flight is not None else []
        self._raise_if_failed()
        if not self._catching_up(polled):
            self._decode_ahead(polled)
            self._finish_in_flight()
            if polled:
                polled += consumer.consume(most - len(polled), 0)
            else:
                polled = consume_ready(consumer, most, _POLL_TIMEOUT)
            self._raise_if_failed()
        messages = []
        for message in polled:
            error = message.error()
            if error is None:
                # A call that ran a revocation may still return records of the partitions
                # revoked: another instance applies them now.
                if message.partition() in self._assigned:
                    messages.append(message)
            elif error.fatal() or error.code() == KafkaError._AUTO_OFFSET_RESET:
                raise FeedFailed(f"consuming {self._topic!r}: {error.str()}")
            else:
                log.warning("consuming %s: %s", self._topic, error.str())
        return messages

    def _decode_ahead(self, polled: Sequence[Message]) -> None:
        """Decode live records fetched while a batch is in flight before waiting for it: the
        event loop feeds PostgreSQL meanwhile, and the next batch (these and what arrives
        while it commits) then decodes only the rest (docs/performance.md, "Live batches:
        decoding while the previous one commits")."""
        if self._in_flight is None:
            return
        usable = [message for message in polled if message.error() is None]
        if not usable:
            return
        try:
            records = consumed_records(self._codec, usable)
        except Exception:
            return  # the registry did not answer: `_decoded` tries again, and waits
        self._ahead = {id(m): (m, r) for m, r in zip(usable, records, strict=True)}

    def _decoded(self, messages: Sequence[Message]) -> list[ConsumedRecord] | None:
        """The messages as records (those decoded ahead taken as they are), or None if we
        were stopped while the registry was down."""
        ahead = self._ahead
        if not ahead:
            return self._decoded_now(messages)
        rest = [m for m in messages if ahead.get(id(m), (None,))[0] is not m]
        decoded = self._decoded_now(rest) if rest else []
        if decoded is None:
            return None
        fresh = iter(decoded)
        records = []
        for message in messages:
            entry = ahead.get(id(message))
            records.append(entry[1] if entry is not None and entry[0] is message else next(fresh))
        return records

    def _decoded_now(self, messages: Sequence[Message]) -> list[ConsumedRecord] | None:
        delay = 0.1
        while True:
            try:
                return consumed_records(self._codec, messages)
            except Exception as error:
                # Not UndecodableEvent (that is per record): the registry did not answer, and
                # the same bytes will decode once it does.
                log.warning("decoding failed (%r); retrying in %.1fs", error, delay)
            if self._stopping.wait(delay):
                return None
            delay = min(delay * 2, _RETRY_DELAY_MAX)

    def _raise_if_failed(self) -> None:
        if self._failed is not None:
            failed, self._failed = self._failed, None
            raise failed

    def _observe(self, consumer: Consumer) -> None:
        """Record our partitions' high watermarks, and the consumer's position while no batch
        is in flight (with one, records before the position may not be applied yet)."""
        try:
            positions = consumer.position(consumer.assignment())
        except KafkaException:
            return
        settled = self._in_flight is None
        for tp in positions:
            _low, high = consumer.get_watermark_offsets(tp, cached=True)
            self._status.observed(
                tp.partition,
                position=tp.offset if settled and tp.offset >= 0 else None,
                high_watermark=high if high >= 0 else None,
            )

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        numbers = [tp.partition for tp in partitions]
        started = time.monotonic()
        checkpoints = self._read_checkpoints(numbers)
        for tp in partitions:
            tp.offset = checkpoints.get(tp.partition, -1) + 1
        consumer.assign(partitions)
        self._assigned.update(numbers)
        self._status.assigned({p: checkpoints.get(p) for p in numbers})
        log.info(
            "assigned partitions %s of %s, resuming at offsets %s (checkpoints read in %.0f ms)",
            sorted(numbers),
            self._topic,
            {tp.partition: tp.offset for tp in partitions},
            (time.monotonic() - started) * 1000,
        )

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._finish_before_rebalance()
        # Still ours until this returns: what we applied of them reaches Kafka's offsets too.
        self._lag.commit(consumer)
        self._forget(partitions)

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._finish_before_rebalance()
        self._forget(partitions)

    def _forget(self, partitions: list[TopicPartition]) -> None:
        numbers = sorted(tp.partition for tp in partitions)
        self._assigned.difference_update(numbers)
        self._lag.forget(numbers)
        self._view.forget(numbers)
        self._status.revoked(numbers)
        log.info("partitions %s of %s revoked", numbers, self._topic)
