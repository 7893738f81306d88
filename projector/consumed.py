"""Records as the projector consumed them: decoded into an event, or bytes that are not one."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TypeAlias

from confluent_kafka import Message

from ledger.events.codec import EventCodec, UndecodableEvent
from ledger.events.records import Event


# Not frozen: one is made per event consumed, and a frozen dataclass's __init__ costs twice as
# much (it sets each field through object.__setattr__). Nothing changes a record once made.
@dataclass(slots=True)
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


def _undecodable(message: Message, error: str) -> UndecodableRecord:
    headers = message.headers() or []
    return UndecodableRecord(
        message.partition() or 0,
        message.offset() or 0,
        message.key(),
        message.value(),
        tuple(headers.items() if isinstance(headers, dict) else headers),
        error,
    )


def consumed_records(codec: EventCodec, messages: Sequence[Message]) -> list[ConsumedRecord]:
    """`consumed_record` of each message, decoding them as one batch (cheaper per record)."""
    results = codec.decode_batch([message.value() or b"" for message in messages])
    records: list[ConsumedRecord] = []
    append = records.append
    for message, result in zip(messages, results, strict=True):
        if isinstance(result, UndecodableEvent):
            append(_undecodable(message, str(result)))
        else:
            append(DecodedRecord(message.partition() or 0, message.offset() or 0, result))
    return records
