"""The codec's direct reading of current-schema bodies against fastavro's resolving read, which
is what decoding did before it and still does for every other writer schema."""

from __future__ import annotations

import io
import json
import struct

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.events import direct_reader
from ledger.events.avro_mapping import current_schema, from_datum, to_datum
from ledger.events.codec import EventCodec, UndecodableEvent
from ledger.events.records import Event, MoneyDeposited
from ledger.events.schema_history import history_directory
from ledger.events.schema_store import SchemaStore
from ledger.events.topic import VALUE_SUBJECT
from tests.unit.test_codec import AT, COMMON, SAMPLES

V1_SCHEMA = history_directory().joinpath("account_event_v1.avsc")
CURRENT = parse_schema(json.loads(current_schema()))


def resolved(store: SchemaStore, data: bytes) -> Event | str:
    """What decoding did before the direct reader: the event, or UndecodableEvent's message."""
    if len(data) < 5:
        return f"{len(data)} bytes is too short for the Confluent wire format"
    magic, schema_id = struct.unpack_from(">BI", data)
    if magic != 0:
        return f"unknown magic byte {magic} (expected 0)"
    writer = parse_schema(json.loads(store.schema(schema_id)))
    body = io.BytesIO(data[5:])
    try:
        event = from_datum(schemaless_reader(body, writer, CURRENT, return_record_name=True))
    except Exception as error:
        return f"corrupt Avro body: {error!r} (schema id {schema_id})"
    if body.tell() != len(data) - 5:
        return f"trailing bytes after the Avro body (schema id {schema_id})"
    return event


def decoded(codec: EventCodec, data: bytes) -> Event | str:
    try:
        return codec.decode(data)
    except UndecodableEvent as error:
        return str(error)


@pytest.fixture
def codec(schema_store: SchemaStore) -> EventCodec:
    codec = EventCodec(schema_store)
    codec.register()
    return codec


def test_the_direct_reader_is_written_for_the_current_schema() -> None:
    # If this fails, the schema or the records changed: update direct_reader (until then the
    # codec resolves every body, correct but about three times slower).
    assert direct_reader.layout_of(json.loads(current_schema())) == direct_reader.LAYOUT
    assert direct_reader.layout_of(json.loads(V1_SCHEMA.read_text())) != direct_reader.LAYOUT


@pytest.mark.parametrize("event", SAMPLES, ids=lambda event: type(event).__name__)
def test_direct_reading_equals_resolving_for_every_event_type(
    codec: EventCodec, schema_store: SchemaStore, event: Event
) -> None:
    data = codec.encode(event)
    direct = direct_reader.read(data, 5, {})
    assert direct == resolved(schema_store, data) == event
    assert type(direct) is type(event)
    assert direct.occurred_at.tzinfo is event.occurred_at.tzinfo


def test_batches_decode_like_single_values(codec: EventCodec, schema_store: SchemaStore) -> None:
    v1_text = V1_SCHEMA.read_text()
    v1_id = schema_store.register(VALUE_SUBJECT, v1_text)
    v1_body = io.BytesIO()
    datum = to_datum(MoneyDeposited(event_id="e9", version=9, **COMMON, amount=7))
    del datum["balance_after"]
    schemaless_writer(v1_body, parse_schema(json.loads(v1_text)), datum)
    values = [
        *(codec.encode(event) for event in SAMPLES),
        struct.pack(">BI", 0, v1_id) + v1_body.getvalue(),
        b"\x00\x00",
        codec.encode(SAMPLES[1])[:-2],
        codec.encode(SAMPLES[2]) + b"\x00",
    ]

    results = codec.decode_batch(values)

    assert [r if isinstance(r, Event) else str(r) for r in results] == [
        decoded(codec, value) for value in values
    ]
    assert results[: len(SAMPLES)] == SAMPLES
    assert results[len(SAMPLES)] == MoneyDeposited(event_id="e9", version=9, **COMMON, amount=7)
    assert all(isinstance(r, UndecodableEvent) for r in results[len(SAMPLES) + 1 :])
    undecodable = results[-1]
    assert isinstance(undecodable, UndecodableEvent)
    assert undecodable.schema_id == codec.schema_id


def test_a_codec_that_did_not_register_reads_current_bodies_directly_too(
    codec: EventCodec, schema_store: SchemaStore
) -> None:
    reader = EventCodec(schema_store)
    assert reader.decode_batch([codec.encode(event) for event in SAMPLES]) == SAMPLES


def test_events_of_one_timestamp_share_one_datetime(codec: EventCodec) -> None:
    first, second = codec.decode_batch([codec.encode(SAMPLES[1]), codec.encode(SAMPLES[2])])
    assert isinstance(first, Event)
    assert isinstance(second, Event)
    assert first.occurred_at is second.occurred_at
    assert first.occurred_at == AT


@settings(max_examples=1000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200))
def test_random_bodies_decode_as_resolving_decodes_them(
    codec: EventCodec, schema_store: SchemaStore, body: bytes
) -> None:
    data = struct.pack(">BI", 0, codec.schema_id) + body
    assert decoded(codec, data) == resolved(schema_store, data)


@settings(max_examples=1000, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    index=st.integers(0, len(SAMPLES) - 1),
    edits=st.lists(st.tuples(st.integers(0, 10_000), st.integers(0, 255)), max_size=4),
    cut=st.integers(0, 10_000),
    extra=st.binary(max_size=12),
)
def test_corrupted_events_decode_as_resolving_decodes_them(
    codec: EventCodec,
    schema_store: SchemaStore,
    index: int,
    edits: list[tuple[int, int]],
    cut: int,
    extra: bytes,
) -> None:
    data = bytearray(codec.encode(SAMPLES[index]))
    for position, byte in edits:
        data[5 + position % (len(data) - 5)] = byte
    mangled = bytes(data[: max(5, len(data) - cut % 8)]) + extra
    assert decoded(codec, mangled) == resolved(schema_store, mangled)


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    version=st.integers(-(2**63), 2**63 - 1),
    amount=st.integers(-(2**63), 2**63 - 1),
    balance=st.none() | st.integers(-(2**63), 2**63 - 1),
    millis=st.integers(-62135596800000, 253402300799999),
    text=st.text(max_size=80),
)
def test_any_valid_event_reads_directly_as_it_resolves(
    codec: EventCodec,
    schema_store: SchemaStore,
    version: int,
    amount: int,
    balance: int | None,
    millis: int,
    text: str,
) -> None:
    datum = to_datum(SAMPLES[3])
    datum.update(version=version, balance_after=balance, occurred_at=millis, command_id=text)
    datum.update(reference=text, memo=text[::-1])
    datum["payload"][1].update(amount=amount, counterparty_id=text)
    body = io.BytesIO()
    schemaless_writer(body, CURRENT, datum)
    data = struct.pack(">BI", 0, codec.schema_id) + body.getvalue()
    assert direct_reader.read(data, 5, {}) == resolved(schema_store, data)
