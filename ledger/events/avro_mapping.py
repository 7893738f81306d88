"""How event records map onto the Avro envelope in `schemas/account_event.avsc`.

The envelope holds the fields every event has; `payload` is a union with one Avro record per
event class, named after the class, whose fields are the class's own fields.
"""

from __future__ import annotations

from dataclasses import fields
from importlib.resources import files
from typing import Any

from ledger.events import records

AVRO_NAMESPACE = "ledger.events"
EVENT_TYPES: tuple[type[records.Event], ...] = (
    records.AccountOpened,
    records.MoneyDeposited,
    records.MoneyWithdrawn,
    records.TransferDebited,
    records.TransferCredited,
    records.AccountClosed,
    records.OwnerErased,
    records.TransferSent,
    records.TransferRefunded,
)
_BY_AVRO_NAME: dict[str, type[records.Event]] = {
    f"{AVRO_NAMESPACE}.{event_type.__name__}": event_type for event_type in EVENT_TYPES
}
ENVELOPE_FIELDS = tuple(field.name for field in fields(records.AccountEvent))
_PAYLOAD_FIELDS: dict[type[records.Event], tuple[str, ...]] = {
    event_type: tuple(f.name for f in fields(event_type) if f.name not in ENVELOPE_FIELDS)
    for event_type in EVENT_TYPES
}
_BYTES_FIELDS: dict[type[records.Event], tuple[str, ...]] = {
    event_type: tuple(f.name for f in fields(event_type) if f.type in ("bytes", bytes))
    for event_type in EVENT_TYPES
}


def current_schema() -> str:
    """The live schema's JSON text, as shipped with the package."""
    return files("ledger.events").joinpath("schemas", "account_event.avsc").read_text("utf-8")


def record_fields() -> dict[str, tuple[str, ...]]:
    """Every field of each event class (envelope and own), by its payload record's Avro name."""
    return {
        name: tuple(f.name for f in fields(event_type))
        for name, event_type in _BY_AVRO_NAME.items()
    }


def to_datum(event: records.Event) -> dict[str, Any]:
    """The Avro datum for `event`, with the payload in fastavro's (record name, value) notation."""
    datum = {name: getattr(event, name) for name in ENVELOPE_FIELDS}
    payload = {name: getattr(event, name) for name in _PAYLOAD_FIELDS[type(event)]}
    datum["payload"] = (f"{AVRO_NAMESPACE}.{type(event).__name__}", payload)
    return datum


def from_datum(datum: object) -> records.Event:
    """The event in a datum read with the current schema (payload as (record name, value)).

    Raises KeyError, TypeError or ValueError if the datum does not have that shape.
    """
    if not isinstance(datum, dict):
        raise TypeError(f"expected an AccountEvent record, got {type(datum).__name__}")
    avro_name, payload = datum["payload"]
    event_type = _BY_AVRO_NAME[avro_name]
    envelope = {name: datum[name] for name in ENVELOPE_FIELDS}
    own = {name: payload[name] for name in _PAYLOAD_FIELDS[event_type]}
    for name in _BYTES_FIELDS[event_type]:
        # A bytes field missing from the writer's schema gets its default, which fastavro hands
        # over as the schema's JSON string (Avro: code points 0-255 stand for the bytes).
        if isinstance(own[name], str):
            own[name] = own[name].encode("latin-1")
    return event_type(**envelope, **own)
