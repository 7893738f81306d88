"""The codec's direct writing of current-schema bodies against fastavro's, which is what
encoding did before it and still does for any event the direct writer leaves to it."""

from __future__ import annotations

import dataclasses
import io
import json
import struct
from datetime import UTC, datetime, timedelta

import pytest
from fastavro import parse_schema, schemaless_writer
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.events import direct_reader
from ledger.events.avro_mapping import current_schema, to_datum
from ledger.events.codec import EventCodec
from ledger.events.direct_writer import DirectWriter, NotDirectlyWritable
from ledger.events.records import Event
from ledger.events.schema_store import SchemaStore
from tests.unit.test_codec import SAMPLES

CURRENT = parse_schema(json.loads(current_schema()))
WRITER = DirectWriter(direct_reader.LAYOUT)


def by_fastavro(event: Event) -> bytes:
    body = io.BytesIO()
    schemaless_writer(body, CURRENT, to_datum(event))
    return body.getvalue()


def directly(event: Event) -> bytes:
    out = bytearray()
    WRITER.body(event, out)
    return bytes(out)


def fast(event: Event) -> bytes:
    """The codec's path: `value`, whose own steps fall back to `body` for anything unusual."""
    return WRITER.value(b"", event)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda event: type(event).__name__)
def test_direct_writing_equals_fastavro_for_every_event_type(event: Event) -> None:
    assert directly(event) == by_fastavro(event)
    assert fast(event) == by_fastavro(event)


def test_values_too_long_for_the_length_table_are_written_as_fastavro_writes_them() -> None:
    long_text = "é" * 9_000  # 18,000 bytes: a three-byte length
    event = dataclasses.replace(SAMPLES[1], memo=long_text, version=2**40, balance_after=-(2**62))
    assert fast(event) == by_fastavro(event)


def test_the_codec_writes_directly_and_reads_it_back(schema_store: SchemaStore) -> None:
    codec = EventCodec(schema_store)
    codec.register()
    for event in SAMPLES:
        data = codec.encode(event)
        assert data == struct.pack(">BI", 0, codec.schema_id) + by_fastavro(event)
        assert codec.decode(data) == event


def test_a_transaction_s_events_are_encoded_as_one_by_one(schema_store: SchemaStore) -> None:
    codec = EventCodec(schema_store)
    codec.register()
    # One its quick steps leave to `body` (a memo too long for the length table), one the direct
    # writer leaves to fastavro (a bool for a long, which fastavro writes as 1).
    long_memo = dataclasses.replace(SAMPLES[1], memo="m" * 10_000)
    a_bool = dataclasses.replace(SAMPLES[1], version=True)
    events = [*SAMPLES, long_memo, a_bool, SAMPLES[0]]
    assert codec.encode_all(events) == [codec.encode(event) for event in events]


@settings(max_examples=500)
@given(
    index=st.integers(0, len(SAMPLES) - 1),
    version=st.integers(-(2**63), 2**63 - 1),
    amount=st.integers(-(2**63), 2**63 - 1),
    balance=st.none() | st.integers(-(2**63), 2**63 - 1),
    millis=st.integers(-62135596800000 + 86_400_000, 253402300799999 - 86_400_000),
    text=st.text(max_size=80),
    raw=st.binary(max_size=80),
)
def test_any_event_is_written_as_fastavro_writes_it(
    index: int,
    version: int,
    amount: int,
    balance: int | None,
    millis: int,
    text: str,
    raw: bytes,
) -> None:
    event = SAMPLES[index]
    changes: dict[str, object] = {
        "version": version,
        "balance_after": balance,
        "command_id": text,
        "occurred_at": datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis),
    }
    own = {f.name for f in dataclasses.fields(event)}
    changes.update(
        {
            name: value
            for name, value in (
                ("amount", amount),
                ("counterparty_id", text),
                ("reason", text),
                ("owner", text),
                ("owner_sealed", raw),
            )
            if name in own
        }
    )
    changed = dataclasses.replace(event, **changes)  # type: ignore[arg-type]
    assert directly(changed) == by_fastavro(changed)
    # Twice: the second time from the time it remembered from the first.
    assert fast(changed) == fast(changed) == by_fastavro(changed)


@pytest.mark.parametrize(
    "change",
    [{"version": 2**63}, {"command_id": "\udc80"}, {"balance_after": -(2**63) - 1}],
    ids=["long too large", "lone surrogate", "long too small"],
)
def test_what_the_direct_writer_cannot_write_is_left_to_fastavro(
    schema_store: SchemaStore, change: dict[str, object]
) -> None:
    event = dataclasses.replace(SAMPLES[1], **change)  # type: ignore[arg-type]
    with pytest.raises(NotDirectlyWritable):
        directly(event)
    with pytest.raises(NotDirectlyWritable):
        fast(event)
    codec = EventCodec(schema_store)
    codec.register()
    # fastavro's own failures: OverflowError, UnicodeEncodeError, ValueError.
    with pytest.raises((OverflowError, ValueError)) as direct_failure:
        codec.encode(event)
    with pytest.raises((OverflowError, ValueError)) as fastavro_failure:
        by_fastavro(event)
    assert type(direct_failure.value) is type(fastavro_failure.value)
