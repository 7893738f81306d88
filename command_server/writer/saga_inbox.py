"""The writer's reader of its partitions of the transfers topic (docs/design.md, decision 13).

A read_committed consumer assigned (never subscribed: the shard owns its partitions, as it owns
the event topic's) from the offsets the shard committed in its own transactions. librdkafka's
consumer blocks, so it reads on a thread of its own and hands what it read to the writer's loop
through a bounded queue, waking the loop through a socket the loop waits on beside its pipe.
The thread only reads: processing, and committing how far, is the writer's (saga_steps.py).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import socket
import threading
from collections.abc import Mapping

from confluent_kafka import Consumer, Message, TopicPartition

from ledger.events.consuming import consume_ready
from ledger.kafka_security import KafkaSecurity

log = logging.getLogger(__name__)

READ_AT_ONCE = 500
"""Messages one read takes at most (and so one saga transaction, at most, per queued read)."""
QUEUED_READS = 8
"""Reads waiting for the writer at most; past it the thread waits (backpressure)."""


def saga_consumer_config(bootstrap: str, group: str, security: KafkaSecurity) -> dict[str, object]:
    return {
        **security.config(),
        "logger": log,
        "bootstrap.servers": bootstrap,
        "group.id": group,
        "enable.auto.commit": False,
        "enable.auto.offset.store": False,
        "isolation.level": "read_committed",
        "auto.offset.reset": "earliest",
        # A message becomes readable (read_committed) only once its transaction's marker is
        # written, after the data: a fetch that arrived before waits this long (librdkafka:
        # 500 ms) rather than return at once. Each hop of a saga pays it, the waiting call twice.
        "fetch.wait.max.ms": 10,
    }


def committed_offsets(
    consumer: Consumer, topic: str, partitions: list[int], timeout: float = 30
) -> dict[int, int]:
    """The next offset to process per partition, as the shard's transactions committed it
    (0 where nothing was committed yet)."""
    found = consumer.committed([TopicPartition(topic, p) for p in partitions], timeout=timeout)
    return {tp.partition: max(tp.offset, 0) for tp in found}


class SagaInbox:
    def __init__(
        self,
        bootstrap: str,
        security: KafkaSecurity,
        topic: str,
        group: str,
        start: Mapping[int, int],
    ) -> None:
        self._consumer = Consumer(saga_consumer_config(bootstrap, group, security))
        self.group_metadata: object = self._consumer.consumer_group_metadata()
        self._consumer.assign([TopicPartition(topic, p, o) for p, o in sorted(start.items())])
        self._reads: queue.Queue[list[Message]] = queue.Queue(maxsize=QUEUED_READS)
        self._wake_reader, self._wake_writer = socket.socketpair()
        self._wake_reader.setblocking(False)
        self._wake_writer.setblocking(False)
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._read, name="saga-inbox", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def fileno(self) -> int:
        """Readable when reads are waiting (for multiprocessing.connection.wait)."""
        return self._wake_reader.fileno()

    @property
    def waiting(self) -> bool:
        return not self._reads.empty()

    def take(self) -> list[Message]:
        """Every message read so far, in order (without waiting)."""
        with contextlib.suppress(BlockingIOError):
            self._wake_reader.recv(4096)
        taken: list[Message] = []
        while True:
            try:
                taken.extend(self._reads.get_nowait())
            except queue.Empty:
                return taken

    def _read(self) -> None:
        while not self._stopping.is_set():
            # Not consume(n, timeout): it waits for n messages or the whole timeout.
            messages = consume_ready(self._consumer, READ_AT_ONCE, 0.5)
            read = []
            for message in messages:
                error = message.error()
                if error is None:
                    read.append(message)
                else:
                    # Transient (a broker away): librdkafka goes on reading by itself.
                    log.warning("reading the transfers topic: %s", error.str())
            while read and not self._stopping.is_set():
                try:
                    self._reads.put(read, timeout=0.5)
                except queue.Full:
                    continue
                with contextlib.suppress(BlockingIOError):
                    self._wake_writer.send(b"!")
                break

    def close(self) -> None:
        self._stopping.set()
        self._thread.join(5)
        self._consumer.close()
        self._wake_reader.close()
        self._wake_writer.close()
