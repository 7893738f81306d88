from __future__ import annotations

import io
import json
import struct
from datetime import UTC, datetime
from typing import Any

import pytest
from fastavro import parse_schema, schemaless_reader, schemaless_writer
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.events import records
from ledger.events.avro_mapping import EVENT_TYPES, current_schema
from ledger.events.codec import EventCodec, UndecodableEvent, key_of
from ledger.events.schema_history import history_directory
from ledger.events.schema_store import SchemaStore, UnknownSchemaId
from ledger.events.topic import VALUE_SUBJECT

V1_SCHEMA = history_directory().joinpath("account_event_v1.avsc")
AT = datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)
COMMON: dict[str, Any] = {
    "account_id": "acc-1",
    "command_id": "cmd-1",
    "command_fingerprint": "ab" * 32,
    "occurred_at": AT,
}

SAMPLES: list[records.Event] = [
    records.AccountOpened(event_id="e1", version=1, **COMMON, currency="USD", owner="Zoë ✓"),
    records.MoneyDeposited(
        event_id="e2", version=2, **COMMON, balance_after=2**63 - 1, amount=2**63 - 1
    ),
    records.MoneyWithdrawn(
        event_id="e3",
        version=3,
        **COMMON,
        balance_after=0,
        amount=1,
        reference="inv-2024-0042",
        memo="Miete März ✓ 🏠",
    ),
    records.TransferDebited(
        event_id="e4",
        version=4,
        **COMMON,
        balance_after=10,
        amount=5,
        reference="r" * 64,
        transfer_id="t1",
        counterparty_id="acc-2",
    ),
    records.TransferCredited(
        event_id="e5", version=5, **COMMON, amount=5, transfer_id="t1", counterparty_id="acc-2"
    ),
    records.AccountClosed(event_id="e6", version=6, **COMMON, balance_after=0),
    records.OwnerErased(event_id="e7", version=7, **COMMON, balance_after=0),
    records.AccountOpened(
        event_id="e8", version=1, **COMMON, currency="EUR", owner="", owner_sealed=b"\x00\xff"
    ),
    records.TransferSent(
        event_id="e9", version=8, **COMMON, amount=7, transfer_id="t2", counterparty_id="acc-3"
    ),
    records.TransferRefunded(
        event_id="e10",
        version=9,
        **COMMON,
        balance_after=7,
        amount=7,
        transfer_id="t2",
        counterparty_id="acc-3",
        reason="account 'acc-3' is closed",
    ),
]


@pytest.fixture
def codec(schema_store: SchemaStore) -> EventCodec:
    codec = EventCodec(schema_store)
    codec.register()
    return codec


def test_samples_cover_every_event_type() -> None:
    assert {type(event) for event in SAMPLES} == set(EVENT_TYPES)


@pytest.mark.parametrize("event", SAMPLES, ids=lambda event: type(event).__name__)
def test_every_event_type_round_trips(codec: EventCodec, event: records.Event) -> None:
    assert codec.decode(codec.encode(event)) == event


def test_values_use_the_confluent_wire_format(codec: EventCodec) -> None:
    data = codec.encode(SAMPLES[0])
    assert data[0] == 0
    assert struct.unpack(">I", data[1:5]) == (codec.schema_id,)


def test_register_is_idempotent(schema_store: SchemaStore) -> None:
    first, second = EventCodec(schema_store), EventCodec(schema_store)
    assert first.register() == second.register()
    assert schema_store.schema(first.schema_id) == current_schema()


class SubjectRecorder:
    def __init__(self) -> None:
        self.subjects: list[str] = []

    def register(self, subject: str, schema: str) -> int:
        self.subjects.append(subject)
        return 7

    def schema(self, schema_id: int) -> str:
        raise UnknownSchemaId(str(schema_id))


def test_register_uses_the_topics_value_subject() -> None:
    recorder = SubjectRecorder()
    codec = EventCodec(recorder)
    assert codec.register() == 7
    codec.register("account_events_test_1")
    assert recorder.subjects == [VALUE_SUBJECT, "account_events_test_1-value"]
    assert VALUE_SUBJECT == "account_events-value"
    assert codec.schema_id == 7


async def test_register_async_registers_without_blocking(schema_store: SchemaStore) -> None:
    codec = EventCodec(schema_store)
    assert await codec.register_async() == codec.schema_id


def test_encoding_before_registering_is_an_error(schema_store: SchemaStore) -> None:
    with pytest.raises(RuntimeError, match="register"):
        EventCodec(schema_store).encode(SAMPLES[0])


def test_the_key_is_the_utf8_account_id() -> None:
    assert key_of(SAMPLES[0]) == b"acc-1"
    assert EventCodec.key_of(SAMPLES[0]) == b"acc-1"


def test_bytes_written_with_the_v1_schema_are_read_by_the_current_codec(
    schema_store: SchemaStore, codec: EventCodec
) -> None:
    v1_text = V1_SCHEMA.read_text()
    v1_id = schema_store.register(VALUE_SUBJECT, v1_text)
    assert v1_id != codec.schema_id
    body = io.BytesIO()
    schemaless_writer(
        body,
        parse_schema(json.loads(v1_text)),
        {
            "event_id": "e2",
            "account_id": "acc-1",
            "version": 2,
            "command_id": "cmd-1",
            "command_fingerprint": "ab" * 32,
            "occurred_at": AT,
            "payload": ("ledger.events.MoneyDeposited", {"amount": 1234}),
        },
    )

    event = codec.decode(struct.pack(">BI", 0, v1_id) + body.getvalue())

    assert event == records.MoneyDeposited(event_id="e2", version=2, **COMMON, amount=1234)
    assert event.balance_after is None


def test_the_current_schema_only_adds_defaulted_fields_and_records_to_v1() -> None:
    v1 = json.loads(V1_SCHEMA.read_text())
    current = json.loads(current_schema())
    added = [field for field in current["fields"] if field not in v1["fields"]]
    assert [field["name"] for field in added] == ["payload", "balance_after", "reference", "memo"]
    assert all("default" in field for field in added[1:])
    [v1_payload] = [field for field in v1["fields"] if field["name"] == "payload"]
    old, new = v1_payload["type"], added[0]["type"]
    # The union gains records at its end; AccountOpened gains a defaulted field.
    assert [record["name"] for record in new] == [r["name"] for r in old] + [
        "OwnerErased",
        "TransferSent",
        "TransferRefunded",
    ]
    opened_old, opened_new = old[0]["fields"], new[0]["fields"]
    assert [f["name"] for f in opened_new] == [f["name"] for f in opened_old] + ["owner_sealed"]
    assert "default" in opened_new[-1]
    unchanged = [field for field in current["fields"] if field not in added]
    assert unchanged == [field for field in v1["fields"] if field["name"] != "payload"]


def test_a_stock_reader_decodes_our_bytes_with_the_writer_schema_alone(codec: EventCodec) -> None:
    data = codec.encode(SAMPLES[3])
    writer = parse_schema(json.loads(current_schema()))
    datum: Any = schemaless_reader(io.BytesIO(data[5:]), writer, None)
    assert datum["payload"] == {"amount": 5, "transfer_id": "t1", "counterparty_id": "acc-2"}


def _avro_types(node: object) -> list[str]:
    """Every type name used anywhere in a schema."""
    if isinstance(node, str):
        return [node]
    if isinstance(node, list):
        return [name for item in node for name in _avro_types(item)]
    if isinstance(node, dict):
        found = [node["type"]] if isinstance(node.get("type"), str) else []
        for key in ("type", "fields", "items", "values"):
            if key in node and not isinstance(node[key], str):
                found += _avro_types(node[key])
        return found
    return []


@pytest.mark.parametrize("schema_text", [current_schema(), V1_SCHEMA.read_text()])
def test_money_is_never_a_binary_float(schema_text: str) -> None:
    types = _avro_types(json.loads(schema_text))
    assert "long" in types
    assert not {"float", "double"} & set(types)


# --- garbage ---


def _framed(schema_id: int, body: bytes) -> bytes:
    return struct.pack(">BI", 0, schema_id) + body


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "too short"),
        (b"\x00\x00\x00\x01", "too short"),
        (b"\x01\x00\x00\x00\x01\x02", "unknown magic byte 1"),
        (b"{json}", "unknown magic byte 123"),
        (_framed(999, b"\x02"), "unknown schema id"),
    ],
)
def test_undecodable_framing_is_reported(codec: EventCodec, data: bytes, reason: str) -> None:
    with pytest.raises(UndecodableEvent, match=reason):
        codec.decode(data)


def test_a_truncated_body_is_undecodable(codec: EventCodec) -> None:
    data = codec.encode(SAMPLES[3])
    with pytest.raises(UndecodableEvent, match="corrupt Avro body") as caught:
        codec.decode(data[:-3])
    assert caught.value.schema_id == codec.schema_id


def test_trailing_bytes_are_undecodable(codec: EventCodec) -> None:
    with pytest.raises(UndecodableEvent, match="trailing bytes"):
        codec.decode(codec.encode(SAMPLES[0]) + b"\x00")


def test_a_bad_union_branch_is_undecodable(codec: EventCodec) -> None:
    data = bytearray(codec.encode(SAMPLES[5]))
    # AccountClosed ends with: payload branch 5 (zigzag 0x0A), no fields, balance_after as
    # branch 1 (0x02) holding 0 (0x00), then an empty reference and memo (0x00 each). Point the
    # payload at branch 63 of a nine-branch union.
    assert data[-5:] == b"\x0a\x02\x00\x00\x00"
    data[-5] = 0x7E
    with pytest.raises(UndecodableEvent, match="corrupt Avro body"):
        codec.decode(bytes(data))


def test_a_writer_schema_that_is_not_an_account_event_is_undecodable(
    schema_store: SchemaStore, codec: EventCodec
) -> None:
    other = schema_store.register("other-value", json.dumps({"type": "string"}))
    with pytest.raises(UndecodableEvent, match="corrupt Avro body"):
        codec.decode(_framed(other, b"\x06abc"))


def test_a_writer_schema_that_does_not_parse_is_undecodable(
    schema_store: SchemaStore, codec: EventCodec
) -> None:
    broken = schema_store.register("other-value", '{"type": "no-such-type"}')
    with pytest.raises(UndecodableEvent, match="unusable writer schema"):
        codec.decode(_framed(broken, b"\x00"))


class UnreachableRegistry:
    def register(self, subject: str, schema: str) -> int:
        return 1

    def schema(self, schema_id: int) -> str:
        raise ConnectionError("registry down")


def test_an_unreachable_registry_is_not_mistaken_for_garbage() -> None:
    codec = EventCodec(UnreachableRegistry())
    with pytest.raises(ConnectionError):
        codec.decode(_framed(2, b"\x00"))


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.binary(max_size=200))
def test_random_bytes_decode_to_an_event_or_raise_undecodable(
    codec: EventCodec, body: bytes
) -> None:
    try:
        event = codec.decode(_framed(codec.schema_id, body))
    except UndecodableEvent:
        return
    assert codec.decode(codec.encode(event)) == event
