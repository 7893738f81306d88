"""Kafka as the event store: transactional appends by the one writer of a shard, and replay.

Every call here blocks. All of them are made in the writer process: on its main thread (the
start-up's replay, then the batch loop's appends), except the snapshot producer's store, which
background_snapshots.py drives from its own thread.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import NoReturn

from confluent_kafka import KafkaError, KafkaException, Producer, TopicPartition

from command_server.read_back import UnreadableLog, read_back
from command_server.sealing import Sealing
from command_server.transactions import (
    COMMIT_TIMEOUT,
    AppendFailed,
    Appending,
    AppendUnsettled,
    Consumed,
    Deliveries,
    DeliveryUnconfirmed,
    Encoded,
    ErrorKind,
    Fenced,
    Message_,
    abort,
    classify,
    commit,
    group_metadata,
    initialise,
    new_producer,
    retire,
    send,
)
from ledger.events.codec import EventCodec
from ledger.events.records import Event
from ledger.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)

FENCE_CHECK_EVERY = 10.0
"""Seconds without a transaction reaching the coordinator after which an idle probe sends one,
so that an idle instance learns that another took the shard over."""
FENCE_CHECK_TIMEOUT = 5.0
"""Seconds each call of that transaction may take (a batch arriving meanwhile waits): on a busy
machine a healthy coordinator can take more than the metadata probe's 2 s."""

__all__ = ["AppendFailed", "AppendUnsettled", "Appending", "DeliveryUnconfirmed", "EventStore"]
__all__ += ["Fenced"]
__all__ += ["UnreadableLog", "open_together"]


class EventStore:
    """Appends go through the shard's transactional producers in turn, one transaction at a time.

    Why more than one: after a commit the broker still writes the transaction's markers, and a
    producer that starts its next transaction before that is done is told
    CONCURRENT_TRANSACTIONS and retried by librdkafka after a fixed 20 ms, which under load hit
    many transactions (docs/performance.md, "What changed in `command_server/`", item 5). The
    next transaction therefore goes to the other producer, whose previous transaction finished
    a whole batch ago. Appends still never overlap: each one begins producing only after the
    previous one committed, so the log holds them in the order they were decided. A new
    instance fences every one of the ids before it replays.

    A producer whose transaction failed other than by a fence is replaced (transactions.py);
    until its replacement is initialised the store raises AppendUnsettled for its turn.
    """

    def __init__(
        self,
        bootstrap: str,
        topic: str,
        transactional_ids: Sequence[str],
        codec: EventCodec,
        security: KafkaSecurity = KafkaSecurity(),  # noqa: B008 (frozen, so safe to share)
        sealing: Sealing | None = None,
        compression: str = "none",
    ) -> None:
        if not transactional_ids:
            raise ValueError("an event store needs at least one transactional id")
        self._topic = topic
        self._codec = codec
        self._sealing = sealing
        """Seals owners and writes their keys (sealing.py); None only where no owner is written."""
        self._security = security
        self._ids = list(transactional_ids)
        self._compression = compression
        """The producers' `compression.type` (snapshot_topic.SNAPSHOT_COMPRESSION for snapshots)."""
        self._producers = [
            new_producer(bootstrap, tid, security, compression) for tid in transactional_ids
        ]
        self._broken: set[int] = set()
        """Producers replaced after a failure whose replacement is not initialised yet."""
        self._turn = 0
        """The producer that writes the next transaction."""
        self._bootstrap = bootstrap
        self._in_transaction = False
        """Whether the producer whose turn it is has begun its transaction (`prepare`)."""
        self._coordinator_heard = time.monotonic()
        """When a transaction last reached the coordinator (a fence would have said so)."""
        self._probe_groups: dict[int, object] = {}
        """Per producer, the consumer group metadata its probe transactions name."""

    def open(self, timeout: float = 60) -> None:
        """Fence any zombie holding our transactional ids and abort its open transactions."""
        open_together([self], timeout)

    @property
    def healthy(self) -> bool:
        """Whether every producer is initialised (none waits to be replaced)."""
        return not self._broken

    def append(
        self,
        events: Sequence[tuple[Event, int]],
        messages: Sequence[Message_] = (),
        consumed: Consumed | None = None,
    ) -> list[int]:
        """Write `(event, partition)` pairs in one transaction; return each event's offset.
        The transaction also carries `messages` and `consumed` offsets (decision 13)."""
        return self.end_append(self.begin_append(self.encode(events), messages, consumed))

    def encode(self, events: Sequence[tuple[Event, int]]) -> Encoded:
        """`events` as records, owners sealed: CPU only, so the writer may encode a batch while
        the previous one's transaction is still committing (batcher.py)."""
        keys: list[tuple[str, bytes | None]] = []
        if self._sealing is not None:
            events, keys = self._sealing.seal(events)
        values = self._codec.encode_all([event for event, _ in events])
        records = [
            (value, event.account_id.encode(), partition)
            for (event, partition), value in zip(events, values, strict=True)
        ]
        return Encoded(records, keys)

    def begin_append(
        self,
        encoded: Encoded,
        messages: Sequence[Message_] = (),
        consumed: Consumed | None = None,
    ) -> Appending:
        """`append` up to its commit: the records are produced (librdkafka sends them on its
        own threads meanwhile) and the transaction is left open for `end_append`. The next
        transaction may only begin after that: appends never overlap."""
        deliveries = Deliveries()
        turn, producer = self._take_turn()
        try:
            self._begin(producer)
            if self._sealing is not None:
                for account_id, wrapped in encoded.keys:
                    send(producer, self._sealing.key_topic, wrapped, account_id.encode(), 0)
            produce, topic, report = producer.produce, self._topic, deliveries.report
            for value, key, partition in encoded.records:
                try:
                    produce(topic, value, key, partition, report)
                except BufferError:
                    send(producer, topic, value, key, partition, report)
            for topic, message_key, message, message_partition in messages:
                send(producer, topic, message, message_key.encode(), message_partition)
            if consumed is not None:
                positions, group = consumed
                producer.send_offsets_to_transaction(positions, group, COMMIT_TIMEOUT)
        except KafkaException as exc:
            self._failed(turn, producer, exc.args[0])
        return Appending(
            turn, producer, [partition for _, _, partition in encoded.records], deliveries
        )

    def end_append(self, appending: Appending) -> list[int]:
        """Commit the transaction `begin_append` left open; each event's offset."""
        deliveries = appending.deliveries
        try:
            commit(appending.producer)
        except KafkaException as exc:
            self._failed(appending.turn, appending.producer, exc.args[0])
        self._coordinator_heard = time.monotonic()
        offsets = deliveries.offsets(appending.partitions)
        if deliveries.failures or -1 in offsets:
            # librdkafka promises that a commit means delivered: the log holds the batch, and
            # this process does not know where. Only a fresh read of the log can tell.
            missing = offsets.count(-1)
            failures = [f.str() for f in deliveries.failures]
            raise DeliveryUnconfirmed(
                f"transaction committed but {missing} of {len(offsets)} delivery reports are "
                f"missing or failed ({failures})"
            )
        return offsets

    def publish(self, topic: str, records: Sequence[tuple[str, bytes | None]]) -> None:
        """Write keyed records (None: a tombstone) to `topic` in one transaction of their own."""
        turn, producer = self._take_turn()
        try:
            self._begin(producer)
            for key, value in records:
                send(producer, topic, value, key.encode(), 0)
            commit(producer)
        except KafkaException as exc:
            self._failed(turn, producer, exc.args[0])

    def prepare(self) -> None:
        """Begin the next transaction ahead of the next batch, while there is nothing to do.

        Beginning is local to the producer (the broker hears of a transaction only with its
        first record), but it is a round trip to librdkafka's own thread that a waiting batch
        would otherwise pay. A failure here is left to the next `append`, which begins again
        and reports it.
        """
        if self._in_transaction or self._turn in self._broken:
            return
        try:
            self._producers[self._turn].begin_transaction()
        except KafkaException:
            return
        self._in_transaction = True

    def recover(self) -> None:
        """Initialise every replaced producer; raises Fenced, or AppendUnsettled while Kafka
        does not answer."""
        for turn in sorted(self._broken):
            error = initialise(self._producers[turn])
            if error is None:
                self._broken.discard(turn)
                log.info("producer %s re-initialised", self._ids[turn])
                continue
            if classify(error) is ErrorKind.FENCE:
                raise Fenced(f"producer {self._ids[turn]} fenced: {error.str()}")
            # A timed-out initialisation is retried with a fresh producer.
            self._replace(turn)
            raise AppendUnsettled(f"producer {self._ids[turn]} not initialised: {error.str()}")

    def probe(self, partitions: Sequence[int], timeout: float = 2) -> str | None:
        """None if the topic's `partitions` have leaders now and, after FENCE_CHECK_EVERY
        seconds without a transaction, the coordinator still takes ours; otherwise why not.
        Raises Fenced when another instance took the shard over."""
        why = self._leaders(partitions, timeout)
        if why is None and time.monotonic() - self._coordinator_heard >= FENCE_CHECK_EVERY:
            why = self._check_fence(partitions[0] if partitions else 0, FENCE_CHECK_TIMEOUT)
        return why

    def _check_fence(self, partition: int, timeout: float) -> str | None:
        """An empty transaction that reaches the coordinator, then its abort: partition
        leaders say nothing of a fence, only the coordinator knows our epoch is old.

        It adds the offset of a consumer group of its own (the only way to make a transaction
        the coordinator hears of without writing a record), then aborts: nothing is written to
        the log, and the group's offsets never become visible."""
        turn = self._turn
        if turn in self._broken:
            try:
                self.recover()
            except AppendUnsettled as exc:
                return str(exc)
        producer = self._producers[turn]
        try:
            if not self._in_transaction:
                producer.begin_transaction()
            self._in_transaction = False
            producer.send_offsets_to_transaction(
                [TopicPartition(self._topic, partition, 0)], self._probe_group(turn), timeout
            )
            producer.abort_transaction(timeout)
        except KafkaException as exc:
            error: KafkaError = exc.args[0]
            if classify(error) is ErrorKind.FENCE:
                raise Fenced(f"producer {self._ids[turn]} fenced: {error.str()}") from None
            # Its transaction state is unknown now: the next append starts from a new producer.
            log.warning("replacing producer %s after a probe: %s", self._ids[turn], error.str())
            self._replace(turn)
            return f"the transaction coordinator does not answer: {error.str()}"
        self._coordinator_heard = time.monotonic()
        return None

    def _probe_group(self, turn: int) -> object:
        group = self._probe_groups.get(turn)
        if group is None:
            group_id = f"{self._ids[turn]}.fence-probe"
            group = self._probe_groups[turn] = group_metadata(
                self._bootstrap, group_id, self._security
            )
        return group

    def _leaders(self, partitions: Sequence[int], timeout: float) -> str | None:
        try:
            metadata = self._producers[self._turn].list_topics(self._topic, timeout=timeout)
        except KafkaException as exc:
            return f"Kafka does not answer: {exc.args[0].str()}"
        found = metadata.topics.get(self._topic)
        if found is None or found.error is not None:
            return f"topic {self._topic!r} unavailable: {found.error if found else 'missing'}"
        leaderless = [
            p for p in partitions if p not in found.partitions or found.partitions[p].leader < 0
        ]
        return f"partitions {leaderless} have no leader" if leaderless else None

    def _take_turn(self) -> tuple[int, Producer]:
        """The producer for the transaction about to be written; the next one goes to the next.

        A replaced producer is initialised first (raises what `recover` raises)."""
        turn = self._turn
        self._turn = (self._turn + 1) % len(self._producers)
        if turn in self._broken:
            self.recover()
        return turn, self._producers[turn]

    def _begin(self, producer: Producer) -> None:
        began, self._in_transaction = self._in_transaction, False
        # From here on the transaction either commits or is over (aborted or failed).
        if not began:
            producer.begin_transaction()

    def _failed(self, turn: int, producer: Producer, err: KafkaError) -> NoReturn:
        """Raise what `err` means for the append, replacing the producer unless it is usable."""
        kind = classify(err)
        if kind is ErrorKind.FENCE:
            raise Fenced(f"producer fenced: {err.str()}")
        if kind is ErrorKind.ABORTABLE:
            # Aborted (AppendFailed: nothing reached the log, the producer goes on), fenced, or
            # the abort failed too (AppendUnsettled): then the producer is replaced below.
            with contextlib.suppress(AppendUnsettled):
                abort(producer, err)
        log.warning("replacing producer %s after: %s", self._ids[turn], err.str())
        self._replace(turn)
        try:
            self.recover()
        except AppendUnsettled as exc:
            raise AppendUnsettled(f"transaction failed ({err.str()}); {exc}") from None
        raise AppendUnsettled(f"transaction failed ({err.str()}); producer re-initialised")

    def _replace(self, turn: int) -> None:
        if turn == self._turn:
            self._in_transaction = False
        retire(self._producers[turn])
        self._producers[turn] = new_producer(
            self._bootstrap, self._ids[turn], self._security, self._compression
        )
        self._broken.add(turn)

    def close(self) -> None:
        for producer in self._producers:
            try:
                producer.flush(5)
            except KafkaException as exc:
                # Fenced (or failed fatally): it has nothing left that could be delivered.
                log.info("producer closed with: %s", exc.args[0].str())

    def replay(
        self,
        partitions: Sequence[int],
        apply: Callable[[Event, int, int], None],
        start: Mapping[int, int] | None = None,
        timeout: float = 600,
    ) -> int:
        """Feed every committed event of `partitions` to `apply`, from `start` (offset per
        partition, default 0) up to the current end; raises UnreadableLog at a record that
        cannot be decoded (the write model would otherwise be a guess).

        Call it after `open()`: a transaction's markers are written after its commit returns,
        and until they are, a read_committed consumer's end of a partition (its last stable
        offset) stops short of it; fencing the shard's producers waits for their transactions
        to complete, so the end is then every transaction committed before.
        """
        deadline = time.monotonic() + timeout
        return read_back(
            self._bootstrap,
            self._security,
            self._codec,
            self._topic,
            partitions,
            apply,
            start or {},
            deadline,
        )


def open_together(
    stores: Sequence[EventStore], timeout: float = 60, fence_also: Sequence[str] = ()
) -> None:
    """`open` every store's producers at once: each fencing is a few round trips to the
    transaction coordinator, and a start waits for all of them. `fence_also` names further
    transactional ids to fence (ids other configurations of the shard could be writing with),
    each through a producer of its own that is closed once it has fenced them."""
    producers = [producer for store in stores for producer in store._producers]
    bootstrap = stores[0]._bootstrap
    security = stores[0]._security
    fencers = [new_producer(bootstrap, tid, security) for tid in fence_also]
    with ThreadPoolExecutor(max_workers=min(32, len(producers) + len(fencers))) as threads:
        outcomes = list(threads.map(lambda p: initialise(p, timeout), producers + fencers))
        list(threads.map(lambda p: p.close(), fencers))
    for error in outcomes:
        if error is not None:
            raise AppendFailed(f"could not initialise transactions: {error.str()}")
