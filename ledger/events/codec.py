"""Account events as Kafka values in the Confluent wire format.

A value is: magic byte 0, the writer schema's registry id (4 bytes, big-endian), then the Avro
binary body. Any stock Confluent Avro deserializer can read it. Decoding resolves the writer's
schema (fetched by id, cached) against the current schema, so events written by older versions of
the ledger stay readable; bodies written with the current schema itself, nearly all of them, are
read directly into records (`direct_reader`), which skips schema resolution and the
intermediate dicts (docs/performance.md).
"""

from __future__ import annotations

import asyncio
import io
import json
import struct
from collections.abc import Iterable, Sequence
from datetime import datetime
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer
from fastavro.types import Schema

from ledger.events import direct_reader
from ledger.events.avro_mapping import current_schema, from_datum, record_fields, to_datum
from ledger.events.direct_writer import DirectWriter, NotDirectlyWritable
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
        self._schema_json = json.loads(self._schema_text)
        self._reader_schema = parse_schema(json.loads(self._schema_text))
        self._schema_id: int | None = None
        self._header: bytes | None = None
        """The wire format's prefix of every value: the magic byte and the schema's id."""
        self._writer_schemas: dict[int, Schema] = {}
        self._direct = _directly_readable(self._schema_json)
        self._direct_ids: set[int] = set()
        """Writer schema ids whose bodies `direct_reader` reads (the current schema's)."""
        self._writer = DirectWriter(direct_reader.LAYOUT) if self._direct else None
        """Writes bodies of the current schema without fastavro, when it has that layout."""

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
        if self._direct:
            self._direct_ids.add(schema_id)
        self._schema_id = schema_id
        self._header = None
        return schema_id

    async def register_async(self, topic: str = ACCOUNT_EVENTS_TOPIC) -> int:
        """`register()` without blocking the event loop (the registry client is synchronous)."""
        return await asyncio.to_thread(self.register, topic)

    def encode(self, event: Event) -> bytes:
        header = self._header or self._new_header()
        if self._writer is not None:
            try:
                return self._writer.value(header, event)
            except NotDirectlyWritable:
                pass  # fastavro writes it, or says why it cannot
        return self._by_fastavro(header, event)

    def encode_all(self, events: Iterable[Event]) -> list[bytes]:
        """`encode` of each event, in order, with less said per event (a transaction's)."""
        if self._writer is None:
            return [self.encode(event) for event in events]
        header = self._header or self._new_header()
        value, values = self._writer.value, list[bytes]()
        add = values.append
        for event in events:
            try:
                add(value(header, event))
            except NotDirectlyWritable:
                add(self._by_fastavro(header, event))
        return values

    def _new_header(self) -> bytes:
        self._header = _HEADER.pack(MAGIC_BYTE, self.schema_id)
        return self._header

    def _by_fastavro(self, header: bytes, event: Event) -> bytes:
        buffer = io.BytesIO()
        buffer.write(header)
        schemaless_writer(buffer, self._reader_schema, to_datum(event))
        return buffer.getvalue()

    def decode(self, data: bytes) -> Event:
        """The event in a Kafka value. Raises UndecodableEvent if it is not one."""
        return self._decode(data, {})

    def decode_batch(self, values: Sequence[bytes]) -> list[Event | UndecodableEvent]:
        """The event in each value, in order, or the UndecodableEvent saying why it is not one.

        What `decode` does for each value, cheaper per value: timestamps shared by several
        events are converted once. Other errors (registry unreachable) propagate.
        """
        times: dict[int, datetime] = {}
        results: list[Event | UndecodableEvent] = []
        append = results.append
        for data in values:
            try:
                append(self._decode(data, times))
            except UndecodableEvent as error:
                append(error)
        return results

    def _decode(self, data: bytes, times: dict[int, datetime]) -> Event:
        if len(data) < _HEADER.size:
            raise UndecodableEvent(f"{len(data)} bytes is too short for the Confluent wire format")
        magic, schema_id = _HEADER.unpack_from(data)
        if magic != MAGIC_BYTE:
            raise UndecodableEvent(f"unknown magic byte {magic} (expected {MAGIC_BYTE})")
        if schema_id in self._direct_ids:
            try:
                return direct_reader.read(data, _HEADER.size, times)
            # Not the well-formed body it should be: fastavro reads it below and reports it
            # exactly as it always has.
            except Exception:
                pass
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
            loaded: Any = json.loads(text)
            parsed = parse_schema(loaded)
        except Exception as error:
            raise UndecodableEvent(f"unusable writer schema: {error!r}", schema_id) from error
        self._writer_schemas[schema_id] = parsed
        # The same schema under another id (another subject, or a registry that was reset).
        if self._direct and json.loads(text) == self._schema_json:
            self._direct_ids.add(schema_id)
        return parsed


def _directly_readable(schema: Any) -> bool:
    """Whether `direct_reader` was written for this schema and for the records as they are."""
    if direct_reader.layout_of(schema) != direct_reader.LAYOUT:
        return False
    envelope = [name for name, _type in direct_reader.LAYOUT if name != "payload"]
    branches = dict(dict(direct_reader.LAYOUT)["payload"])
    return branches.keys() == record_fields().keys() and all(
        {*envelope, *(name for name, _type in branches[avro_name])} == set(names)
        for avro_name, names in record_fields().items()
    )
