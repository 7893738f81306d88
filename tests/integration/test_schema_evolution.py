"""Schema evolution, checked by the real schema registry (issue 23): every released version of
the event schema registers in order under BACKWARD_TRANSITIVE, incompatible changes are refused,
and events written with every earlier version decode with the newest codec."""

from __future__ import annotations

import copy
import io
import json
import struct
import uuid
from dataclasses import fields, replace
from typing import Any

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient
from fastavro import parse_schema, schemaless_writer

from devstack import LocalStack
from ledger.events import records
from ledger.events.avro_mapping import AVRO_NAMESPACE, current_schema, to_datum
from ledger.events.codec import EventCodec
from ledger.events.schema_history import released_schemas
from ledger.events.schema_store import ConfluentSchemaStore, IncompatibleSchema
from tests.unit.test_codec import COMMON

pytestmark = pytest.mark.integration

_COMMON: dict[str, Any] = {**COMMON, "balance_after": 40, "reference": "inv-7", "memo": "März ✓"}
_TRANSFER: dict[str, Any] = {"amount": 5, "transfer_id": "t1", "counterparty_id": "acc-2"}
# One event of every type the newest schema knows, with every field set.
_EVENTS: list[records.Event] = [
    records.AccountOpened(
        event_id="e1", version=1, **_COMMON, currency="EUR", owner="", owner_sealed=b"\x01\xfe"
    ),
    records.MoneyDeposited(event_id="e2", version=2, **_COMMON, amount=2**63 - 1),
    records.MoneyWithdrawn(event_id="e3", version=3, **_COMMON, amount=1),
    records.TransferDebited(event_id="e4", version=4, **_COMMON, **_TRANSFER),
    records.TransferCredited(event_id="e5", version=5, **_COMMON, **_TRANSFER),
    records.AccountClosed(event_id="e6", version=6, **_COMMON),
    records.OwnerErased(event_id="e7", version=7, **_COMMON),
    records.TransferSent(event_id="e8", version=8, **_COMMON, **_TRANSFER),
    records.TransferRefunded(event_id="e9", version=9, **_COMMON, **_TRANSFER, reason="closed"),
]


def _store(stack: LocalStack) -> ConfluentSchemaStore:
    """A store over a new registry client: nothing comes from another client's cache."""
    return ConfluentSchemaStore(SchemaRegistryClient({"url": stack.registry_url}))


@pytest.fixture(scope="module")
def registered(stack: LocalStack) -> tuple[str, dict[int, int]]:
    """A fresh subject holding every released version, registered oldest first: the subject and
    each version's schema id."""
    subject = f"evolution-{uuid.uuid4().hex[:12]}-value"
    store = _store(stack)
    ids = {version: store.register(subject, text) for version, text in released_schemas()}
    return subject, ids


def test_every_released_version_registers_in_order_each_under_its_own_id(
    registered: tuple[str, dict[int, int]], stack: LocalStack
) -> None:
    subject, ids = registered
    versions = [version for version, _ in released_schemas()]
    assert versions == list(range(1, len(versions) + 1))
    assert len(set(ids.values())) == len(versions)
    client = SchemaRegistryClient({"url": stack.registry_url})
    assert client.get_compatibility(subject) == "BACKWARD_TRANSITIVE"
    assert len(client.get_versions(subject)) == len(versions)
    # Registering the newest again (what every start of the command server does) finds it.
    assert _store(stack).register(subject, current_schema()) == ids[versions[-1]]


def _without_default(schema: dict[str, Any]) -> None:
    schema["fields"].append({"name": "channel", "type": "string"})


def _without_a_union_branch(schema: dict[str, Any]) -> None:
    payload = next(field for field in schema["fields"] if field["name"] == "payload")
    payload["type"] = [b for b in payload["type"] if b["name"] != "TransferRefunded"]


def _money_as_text(schema: dict[str, Any]) -> None:
    payload = next(field for field in schema["fields"] if field["name"] == "payload")
    deposited = next(b for b in payload["type"] if b["name"] == "MoneyDeposited")
    deposited["fields"][0]["type"] = "string"


def _an_old_field_removed_default(schema: dict[str, Any]) -> None:
    """balance_after without its default: v1's events, which lack it, could not be read."""
    field = next(field for field in schema["fields"] if field["name"] == "balance_after")
    field["type"] = "long"
    del field["default"]


@pytest.mark.parametrize(
    "change",
    [_without_default, _without_a_union_branch, _money_as_text, _an_old_field_removed_default],
    ids=lambda change: change.__name__.strip("_"),
)
def test_the_registry_refuses_an_incompatible_change(
    registered: tuple[str, dict[int, int]], stack: LocalStack, change: Any
) -> None:
    subject, ids = registered
    schema = copy.deepcopy(json.loads(current_schema()))
    change(schema)

    with pytest.raises(IncompatibleSchema, match="BACKWARD_TRANSITIVE") as refused:
        _store(stack).register(subject, json.dumps(schema))

    assert "refuses this schema" in str(refused.value)
    cause = refused.value.__cause__
    assert getattr(cause, "http_status_code", None) == 409
    client = SchemaRegistryClient({"url": stack.registry_url})
    # Ids are the registry's, shared by equal schemas across subjects: the newest version's id
    # need not be the largest.
    assert client.get_latest_version(subject).schema_id == ids[max(ids)]


def _written_with(schema: dict[str, Any], event: records.Event) -> tuple[bytes, records.Event]:
    """The Avro body of `event` written with `schema`, and the event the newest codec should
    read from it: every field that schema lacks at its default."""
    envelope = {field["name"] for field in schema["fields"]}
    payload = next(field for field in schema["fields"] if field["name"] == "payload")
    branch = next(b for b in payload["type"] if b["name"] == type(event).__name__)
    written = envelope | {field["name"] for field in branch["fields"]}
    defaults: dict[str, Any] = {f.name: f.default for f in fields(event) if f.name not in written}
    expected: records.Event = replace(event, **defaults)
    body = io.BytesIO()
    schemaless_writer(body, parse_schema(copy.deepcopy(schema)), to_datum(expected))
    return body.getvalue(), expected


def test_events_written_with_every_earlier_version_decode_with_the_newest_codec(
    registered: tuple[str, dict[int, int]], stack: LocalStack
) -> None:
    _, ids = registered
    codec = EventCodec(_store(stack))
    earlier = released_schemas()[:-1]
    assert earlier, "there is an earlier version to read"
    for version, text in earlier:
        schema = json.loads(text)
        payload = next(field for field in schema["fields"] if field["name"] == "payload")
        known = {f"{AVRO_NAMESPACE}.{branch['name']}" for branch in payload["type"]}
        events = [e for e in _EVENTS if f"{AVRO_NAMESPACE}.{type(e).__name__}" in known]
        assert len(events) >= 6, f"v{version} knows the six first event types"
        values, expected = [], []
        for event in events:
            body, wanted = _written_with(schema, event)
            values.append(struct.pack(">BI", 0, ids[version]) + body)
            expected.append(wanted)

        decoded = [codec.decode(value) for value in values]

        assert decoded == expected, f"v{version}"
        assert codec.decode_batch(values) == expected, f"v{version}"
    # v1 had neither balance_after nor the metadata: the defaults were really used.
    first = _written_with(json.loads(earlier[0][1]), _EVENTS[1])[1]
    assert first.balance_after is None
    assert (first.reference, first.memo) == ("", "")
