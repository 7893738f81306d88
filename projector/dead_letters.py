"""The dead-letter topic: bytes from the event topic that are not events (docs/design.md,
decision 6).

Each dead letter keeps the original key, value and headers, and says what went wrong and where it
came from in headers, so that it can be inspected, fixed and replayed by hand.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from confluent_kafka import KafkaError, KafkaException, Message, Producer
from confluent_kafka.admin import AdminClient, NewTopic

from ledger.kafka_security import KafkaSecurity
from projector.consumed import UndecodableRecord

# Dead letters are evidence of a problem in the source of truth: keep them as long as the events.
_TOPIC_CONFIG = {"retention.ms": "-1", "retention.bytes": "-1", "cleanup.policy": "delete"}


class DeadLetterFailed(RuntimeError):
    """Dead letters could not be written; the batch must not commit."""


def ensure_dead_letter_topic(admin: AdminClient, topic: str, timeout: float = 30) -> None:
    """Create the dead-letter topic if it does not exist (one partition: it is low volume)."""
    if topic in admin.list_topics(timeout=timeout).topics:
        return
    futures = admin.create_topics(
        [NewTopic(topic, num_partitions=1, config=dict(_TOPIC_CONFIG))], request_timeout=timeout
    )
    try:
        futures[topic].result(timeout)
    except KafkaException as error:
        # Another projector may have created it between our look and our create.
        if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
            raise


class DeadLetterQueue:
    """Publishes dead letters and waits until Kafka has them. Blocking: call from a thread."""

    def __init__(
        self,
        bootstrap: str,
        source_topic: str,
        topic: str,
        security: KafkaSecurity = KafkaSecurity(),  # noqa: B008 (frozen, so safe to share)
    ) -> None:
        self.topic = topic
        self._source_topic = source_topic
        self._producer = Producer(
            {
                **security.config(),
                "bootstrap.servers": bootstrap,
                "enable.idempotence": True,
                "acks": "all",
                "linger.ms": 0,
                "message.timeout.ms": 30_000,
                "logger": logging.getLogger("projector.kafka"),
            }
        )

    def publish(self, records: Sequence[UndecodableRecord], timeout: float = 60) -> None:
        failures: list[str] = []

        def report(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                failures.append(error.str())

        for record in records:
            self._producer.produce(
                self.topic,
                key=record.key,
                value=record.value,
                headers=[*record.headers, *self._headers(record)],
                on_delivery=report,
            )
        remaining = self._producer.flush(timeout)
        if failures or remaining:
            raise DeadLetterFailed(
                f"could not write {len(records)} dead letters to {self.topic!r}: "
                f"{failures or f'{remaining} still unsent after {timeout}s'}"
            )

    def _headers(self, record: UndecodableRecord) -> list[tuple[str, str | bytes | None]]:
        return [
            ("error", record.error.encode("utf-8")),
            ("original_topic", self._source_topic.encode("utf-8")),
            ("original_partition", str(record.partition).encode("ascii")),
            ("original_offset", str(record.offset).encode("ascii")),
        ]

    def close(self) -> None:
        self._producer.flush(10)
