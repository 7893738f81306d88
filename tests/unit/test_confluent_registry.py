"""The registry adapter and interoperability, against confluent-kafka's in-process mock client."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from confluent_kafka.schema_registry import SchemaRegistryClient, SchemaRegistryError
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from ledger.events.codec import EventCodec
from ledger.events.records import TransferCredited
from ledger.events.schema_store import ConfluentSchemaStore, UnknownSchemaId
from ledger.events.topic import ACCOUNT_EVENTS_TOPIC, VALUE_SUBJECT
from tests.unit.event_envelopes import envelope


class MockRegistry:
    """confluent-kafka's mock client, plus the compatibility setting it does not simulate."""

    def __init__(self, registry_configures_new_subjects: bool = True) -> None:
        self.client = SchemaRegistryClient.new_client({"url": "mock://ledger"})
        self.compatibility: dict[str, str] = {}
        self.first_set_on_existing_subject: bool | None = None
        self._strict = not registry_configures_new_subjects

    def set_compatibility(self, subject_name: str | None = None, level: str | None = None) -> str:
        assert subject_name is not None
        assert level is not None
        exists = subject_name in self.client.get_subjects()
        if self._strict and not exists:
            raise SchemaRegistryError(404, 40401, f"Subject '{subject_name}' not found.")
        if self.first_set_on_existing_subject is None:
            self.first_set_on_existing_subject = exists
        self.compatibility[subject_name] = level
        return level

    def install(self, monkeypatch: pytest.MonkeyPatch) -> SchemaRegistryClient:
        monkeypatch.setattr(self.client, "set_compatibility", self.set_compatibility)
        return self.client


@pytest.mark.parametrize("registry_configures_new_subjects", [True, False])
def test_register_sets_backward_transitive_on_the_subject(
    monkeypatch: pytest.MonkeyPatch, registry_configures_new_subjects: bool
) -> None:
    registry = MockRegistry(registry_configures_new_subjects)
    store = ConfluentSchemaStore(registry.install(monkeypatch))

    schema_id = EventCodec(store).register()

    assert registry.compatibility == {VALUE_SUBJECT: "BACKWARD_TRANSITIVE"}
    assert store.schema(schema_id)
    # Where the registry allows it, the level is set before the first schema is registered.
    assert registry.first_set_on_existing_subject is not registry_configures_new_subjects


def test_an_unknown_id_is_reported_as_unknown(monkeypatch: pytest.MonkeyPatch) -> None:
    store = ConfluentSchemaStore(MockRegistry().install(monkeypatch))
    with pytest.raises(UnknownSchemaId, match="no schema with id 42"):
        store.schema(42)


def test_a_stock_confluent_deserializer_reads_our_events(monkeypatch: pytest.MonkeyPatch) -> None:
    client = MockRegistry().install(monkeypatch)
    codec = EventCodec(ConfluentSchemaStore(client))
    codec.register()
    at = datetime(2024, 5, 1, 12, 0, 0, 250000, tzinfo=UTC)
    event = TransferCredited(
        **envelope("acc-2", 5, at, event_id="e5", command_id="t1"),
        balance_after=1500,
        reference="pay-7",
        memo="März ✓",
        amount=500,
        transfer_id="t1",
        counterparty_id="acc-1",
    )

    datum = AvroDeserializer(client)(
        codec.encode(event), SerializationContext(ACCOUNT_EVENTS_TOPIC, MessageField.VALUE)
    )

    assert datum == {
        "event_id": "e5",
        "account_id": "acc-2",
        "version": 5,
        "command_id": "t1",
        "command_fingerprint": "f",
        "occurred_at": event.occurred_at,
        "payload": {"amount": 500, "transfer_id": "t1", "counterparty_id": "acc-1"},
        "balance_after": 1500,
        "reference": "pay-7",
        "memo": "März ✓",
    }
