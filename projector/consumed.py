"""Records as the projector consumed them: decoded into an event, or bytes that are not one."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

from confluent_kafka import Message

from ledger.events.codec import EventCodec, UndecodableEvent
from ledger.events.records import Event


@dataclass(frozen=True, slots=True)
class DecodedRecord:
    partition: int
    offset: int
    event: Event


@dataclass(frozen=True, slots=True)
class UndecodableRecord:
    """Kept whole (key, value, headers) so that the dead-letter topic gets the original bytes."""

    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, str | bytes | None], ...]
    error: str


ConsumedRecord: TypeAlias = DecodedRecord | UndecodableRecord


def consumed_record(codec: EventCodec, message: Message) -> ConsumedRecord:
    """The record in a Kafka message. Raises only if the registry cannot be asked (transient):
    bytes that are not an event become an UndecodableRecord."""
    partition = message.partition() or 0
    offset = message.offset() or 0
    value = message.value()
    try:
        return DecodedRecord(partition, offset, codec.decode(value or b""))
    except UndecodableEvent as error:
        headers = message.headers() or []
        return UndecodableRecord(
            partition,
            offset,
            message.key(),
            value,
            tuple(headers.items() if isinstance(headers, dict) else headers),
            str(error),
        )
