"""What the codec needs from a schema registry, and its implementation over a real one.

The codec depends only on the `SchemaStore` protocol, so unit tests can give it an in-memory
store; `ConfluentSchemaStore` is the implementation for a Confluent-compatible Schema Registry
(Confluent's own, or Apicurio's Confluent API).
"""

from __future__ import annotations

from typing import Protocol

from confluent_kafka.schema_registry import Schema, SchemaRegistryClient, SchemaRegistryError

from ledger.registry_access import RegistryAccess

_HTTP_NOT_FOUND = 404
_HTTP_CONFLICT = 409


class UnknownSchemaId(LookupError):
    """The registry answered that it has no schema with this id (not a transient failure)."""


class IncompatibleSchema(ValueError):
    """The registry refused to register a schema under a subject: it does not keep the subject's
    compatibility with the versions it already holds (for our events: every event ever written
    must stay readable with it). Not transient: the schema itself has to change."""


class SchemaStore(Protocol):
    def register(self, subject: str, schema: str) -> int:
        """Register the Avro `schema` (JSON text) under `subject`, or find it if it already is,
        and return its global id. The subject must enforce BACKWARD_TRANSITIVE compatibility:
        a schema that breaks it raises IncompatibleSchema."""
        ...

    def schema(self, schema_id: int) -> str:
        """The Avro schema (JSON text) with this id. Raises UnknownSchemaId if there is none;
        other errors (registry unreachable) propagate unchanged."""
        ...


class ConfluentSchemaStore:
    """A SchemaStore over confluent-kafka's client, which caches both directions (schema -> id
    and id -> schema) for the life of the client."""

    def __init__(
        self, client: SchemaRegistryClient, compatibility: str = "BACKWARD_TRANSITIVE"
    ) -> None:
        self._client = client
        self._compatibility = compatibility

    @classmethod
    def connect(cls, registry: str | RegistryAccess) -> ConfluentSchemaStore:
        """A store over a new client of `registry` (its URL, or how to reach it securely)."""
        access = RegistryAccess(registry) if isinstance(registry, str) else registry
        return cls(SchemaRegistryClient(access.client_config()))

    def register(self, subject: str, schema: str) -> int:
        avro = Schema(schema, schema_type="AVRO")
        try:
            # Set first, so the new schema is itself checked against every earlier version.
            self._set_compatibility(subject)
        except SchemaRegistryError as error:
            if error.http_status_code != _HTTP_NOT_FOUND:
                raise
            # Some registries (Apicurio's Confluent API) only configure subjects that exist; a new
            # subject has no earlier version to be compatible with, so register first.
            schema_id = self._register(subject, avro)
            self._set_compatibility(subject)
            return schema_id
        return self._register(subject, avro)

    def _register(self, subject: str, avro: Schema) -> int:
        try:
            return self._client.register_schema(subject, avro)
        except SchemaRegistryError as error:
            if error.http_status_code != _HTTP_CONFLICT:
                raise
            raise IncompatibleSchema(
                f"the schema registry refuses this schema for subject {subject!r}: it is not "
                f"{self._compatibility} compatible with the versions the subject holds "
                f"({error.error_message}). Events written with those versions must stay "
                "readable: add fields only with defaults, and union branches only at the end"
            ) from error

    def _set_compatibility(self, subject: str) -> None:
        try:
            self._client.set_compatibility(subject_name=subject, level=self._compatibility)
        except SchemaRegistryError as error:
            # Two writers configuring a subject at once: the other one created the rule first
            # (Apicurio refuses to create it twice). Fine if it chose what we need.
            if error.http_status_code != _HTTP_CONFLICT:
                raise
            level = self._client.get_compatibility(subject_name=subject)
            if level != self._compatibility:
                raise

    def schema(self, schema_id: int) -> str:
        try:
            found = self._client.get_schema(schema_id)
        except SchemaRegistryError as error:
            if error.http_status_code == _HTTP_NOT_FOUND:
                raise UnknownSchemaId(f"the registry has no schema with id {schema_id}") from error
            raise
        if found.schema_type not in (None, "AVRO") or found.schema_str is None:
            raise UnknownSchemaId(f"schema {schema_id} is a {found.schema_type} schema, not Avro")
        return found.schema_str

    def close(self) -> None:
        self._client.close()
