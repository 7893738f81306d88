"""Fixtures for the unit tests."""

from __future__ import annotations

import pytest

from ledger.events.schema_store import UnknownSchemaId


class InMemorySchemaStore:
    """A SchemaStore that behaves like a registry: one id per distinct schema, shared by
    subjects, ids assigned in order of first registration."""

    def __init__(self) -> None:
        self._ids: dict[str, int] = {}
        self.subjects: dict[str, list[int]] = {}

    def register(self, subject: str, schema: str) -> int:
        schema_id = self._ids.setdefault(schema, len(self._ids) + 1)
        versions = self.subjects.setdefault(subject, [])
        if schema_id not in versions:
            versions.append(schema_id)
        return schema_id

    def schema(self, schema_id: int) -> str:
        for schema, known_id in self._ids.items():
            if known_id == schema_id:
                return schema
        raise UnknownSchemaId(f"no schema with id {schema_id}")


@pytest.fixture
def schema_store() -> InMemorySchemaStore:
    return InMemorySchemaStore()
