"""Account events as Kafka values in the Confluent wire format.

A value is: magic byte 0, the writer schema's registry id (4 bytes, big-endian), then the Avro
binary body. Any stock Confluent Avro deserializer can read it. Decoding resolves the writer's
schema (fetched by id, cached) against the current schema, so events written by older versions of
the ledger stay readable.
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.types import Schema

from ledger.events.avro_mapping import current_schema, from_datum, to_datum
from ledger.events.records import Event
from ledger.events.schema_store import SchemaStore, UnknownSchemaId
from ledger.events.topic import ACCOUNT_EVENTS_TOPIC, value_subject

MAGIC_BYTE = 0
_HEADER = struct.Struct(">BI")


class UndecodableEvent(ValueError):
    """Bytes that are not an account event: bad framing, an unknown schema id, a schema that does
    not resolve to the current one, or a corrupt body. Such records belong in the dead-letter
    topic; transient failures (registry unreachable) are never reported this way."""

    def __init__(self, reason: str, schema_id: int | None = None) -> None:
        super().__init__(reason if schema_id is None else f"{reason} (schema id {schema_id})")
        self.reason = reason
        self.schema_id = schema_id


def key_of(event: Event) -> bytes:
    """The Kafka key: the account id, so one account's events share a partition and stay ordered."""
    return event.account_id.encode("utf-8")


class EventCodec:
    """Encodes events with the current schema and decodes events written with any registered
    version of it.

    Call `register(topic)` once before encoding (in async code: `await codec.register_async()`).
    Decoding needs no registration, but the first record of each writer schema costs one registry
    lookup (blocking); later ones use the cache.
    """

    key_of = staticmethod(key_of)

    def __init__(self, store: SchemaStore) -> None:
        self._store = store
        self._schema_text = current_schema()
        self._reader_schema = _parse(self._schema_text)
        self._schema_id: int | None = None
        self._writer_schemas: dict[int, Schema] = {}

    @property
    def schema_id(self) -> int:
        """The registry id of the schema this codec writes with."""
        if self._schema_id is None:
            raise RuntimeError("EventCodec.register() must be called before encoding")
        return self._schema_id

    def register(self, topic: str = ACCOUNT_EVENTS_TOPIC) -> int:
        """Register the current schema as the value schema of `topic` (subject "<topic>-value"),
        idempotently, and remember its id for encoding."""
        schema_id = self._store.register(value_subject(topic), self._schema_text)
        self._writer_schemas[schema_id] = self._reader_schema
        self._schema_id = schema_id
        return schema_id

    async def register_async(self, topic: str = ACCOUNT_EVENTS_TOPIC) -> int:
        """`register()` without blocking the event loop (the registry client is synchronous)."""
        return await asyncio.to_thread(self.register, topic)

    def encode(self, event: Event) -> bytes:
        buffer = io.BytesIO()
        buffer.write(_HEADER.pack(MAGIC_BYTE, self.schema_id))
        schemaless_writer(buffer, self._reader_schema, to_datum(event))
        return buffer.getvalue()

    def decode(self, data: bytes) -> Event:
        """The event in a Kafka value. Raises UndecodableEvent if it is not one."""
        if len(data) < _HEADER.size:
            raise UndecodableEvent(f"{len(data)} bytes is too short for the Confluent wire format")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise UndecodableEvent(f"unknown magic byte {magic} (expected {MAGIC_BYTE})")
        writer_schema = self._writer_schema(schema_id)
        body = io.BytesIO(data[_HEADER.size :])
        try:
            datum = schemaless_reader(
                body, writer_schema, self._reader_schema, return_record_name=True
            )
            event = from_datum(datum)
        # The body is untrusted bytes: whatever fastavro or the records raise on them (EOF, bad
        # union index, invalid UTF-8, unresolvable schema, ...) means this record is undecodable.
        except Exception as error:
            raise UndecodableEvent(f"corrupt Avro body: {error!r}", schema_id) from error
        if body.tell() != len(data) - _HEADER.size:
            raise UndecodableEvent("trailing bytes after the Avro body", schema_id)
        return event

    def _writer_schema(self, schema_id: int) -> Schema:
        cached = self._writer_schemas.get(schema_id)
        if cached is not None:
            return cached
        try:
            text = self._store.schema(schema_id)
        except UnknownSchemaId as error:
            raise UndecodableEvent(f"unknown schema id: {error}", schema_id) from error
        try:
            parsed = _parse(text)
        except Exception as error:
            raise UndecodableEvent(f"unusable writer schema: {error!r}", schema_id) from error
        self._writer_schemas[schema_id] = parsed
        return parsed


def _parse(text: str) -> Schema:
    schema: Any = json.loads(text)
    return parse_schema(schema)
