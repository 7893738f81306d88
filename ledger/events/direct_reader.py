"""Reads Avro bodies written with exactly the current schema, straight into event records.

fastavro reads a body into dicts (converting the timestamp, tagging the union branch) and
`avro_mapping.from_datum` then copies those into the record: most of a catch-up's decoding
time (docs/performance.md, "The read side"). Bodies written with the current schema itself need
neither schema resolution nor the intermediate dicts, so this module reads their bytes directly.

It is written for one layout of the schema (`LAYOUT`); the codec uses it only while
`layout_of(current schema) == LAYOUT` and only for writer schemas equal to the current one.
It is strict: anything it does not fully understand (a varint over 64 bits, a negative length,
invalid UTF-8, an unknown union branch, a short or long body) raises `NotDirectlyReadable`, and
the codec then reads the same bytes with fastavro, which decides how such bytes are reported.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.events import records

LAYOUT: tuple[tuple[str, Any], ...] = (
    ("event_id", "string"),
    ("account_id", "string"),
    ("version", "long"),
    ("command_id", "string"),
    ("command_fingerprint", "string"),
    ("occurred_at", ("long", "timestamp-millis")),
    (
        "payload",
        (
            (
                "ledger.events.AccountOpened",
                (("currency", "string"), ("owner", "string"), ("owner_sealed", "bytes")),
            ),
            ("ledger.events.MoneyDeposited", (("amount", "long"),)),
            ("ledger.events.MoneyWithdrawn", (("amount", "long"),)),
            (
                "ledger.events.TransferDebited",
                (("amount", "long"), ("transfer_id", "string"), ("counterparty_id", "string")),
            ),
            (
                "ledger.events.TransferCredited",
                (("amount", "long"), ("transfer_id", "string"), ("counterparty_id", "string")),
            ),
            ("ledger.events.AccountClosed", ()),
            ("ledger.events.OwnerErased", ()),
            (
                "ledger.events.TransferSent",
                (("amount", "long"), ("transfer_id", "string"), ("counterparty_id", "string")),
            ),
            (
                "ledger.events.TransferRefunded",
                (
                    ("amount", "long"),
                    ("transfer_id", "string"),
                    ("counterparty_id", "string"),
                    ("reason", "string"),
                ),
            ),
        ),
    ),
    ("balance_after", ("null", "long")),
    ("reference", "string"),
    ("memo", "string"),
)
"""The shape `read` is written for: field names and types in order, union branches in order."""

_TRANSFER_BRANCHES: dict[int, type[records.Event]] = {
    6: records.TransferDebited,
    8: records.TransferCredited,
    14: records.TransferSent,
    16: records.TransferRefunded,
}
"""The union branch bytes of the payloads that start with amount, transfer_id, counterparty_id."""

# What fastavro's timestamp-millis reader computes from, so that the datetimes are equal.
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_new = object.__new__
# Frozen dataclasses refuse normal assignment; object's own __setattr__ is what their __init__
# uses too.
_set = object.__setattr__


class NotDirectlyReadable(ValueError):
    """The body is not one this reader is sure to read as fastavro would."""


def layout_of(schema: Any) -> tuple[tuple[str, Any], ...] | None:
    """The layout of a schema (its JSON, as loaded), in `LAYOUT`'s terms; None if it has a
    shape this module does not describe."""
    try:
        return tuple(
            (f["name"], _type_layout(f["type"], schema["namespace"])) for f in schema["fields"]
        )
    except (KeyError, TypeError, ValueError):
        return None


def _type_layout(node: Any, namespace: str) -> Any:
    if isinstance(node, str):
        return node
    if isinstance(node, list):
        if all(isinstance(branch, dict) and branch.get("type") == "record" for branch in node):
            return tuple(
                (
                    f"{namespace}.{branch['name']}",
                    tuple(
                        (f["name"], _type_layout(f["type"], namespace)) for f in branch["fields"]
                    ),
                )
                for branch in node
            )
        return tuple(_type_layout(branch, namespace) for branch in node)
    if isinstance(node, dict) and "logicalType" in node:
        return (node["type"], node["logicalType"])
    if isinstance(node, dict) and isinstance(node.get("type"), str) and len(node) == 1:
        return node["type"]
    raise ValueError(f"not described: {node!r}")


def _long(data: bytes, pos: int) -> tuple[int, int]:
    """The zigzag varint at `pos`, and the position after it."""
    byte = data[pos]
    if byte < 0x80:
        return (byte >> 1) ^ -(byte & 1), pos + 1
    value = byte & 0x7F
    shift = 7
    while True:
        pos += 1
        byte = data[pos]
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            break
        shift += 7
        if shift > 63:
            raise NotDirectlyReadable("varint longer than 10 bytes")
    if value >> 64:
        raise NotDirectlyReadable("varint over 64 bits")
    return (value >> 1) ^ -(value & 1), pos + 1


def _string(data: bytes, pos: int) -> tuple[str, int]:
    raw, end = _bytes(data, pos)
    return raw.decode(), end


def _bytes(data: bytes, pos: int) -> tuple[bytes, int]:
    byte = data[pos]
    if byte < 0x80:
        size = (byte >> 1) ^ -(byte & 1)
        pos += 1
    else:
        size, pos = _long(data, pos)
    end = pos + size
    if size < 0 or end > len(data):
        raise NotDirectlyReadable("length outside the body")
    return data[pos:end], end


def read(data: bytes, start: int, times: dict[int, datetime]) -> records.Event:
    """The event in `data[start:]`, which must be exactly one body of the current schema.

    `times` maps epoch milliseconds to the datetimes already built for them: the events of one
    command batch share their timestamp, and a datetime is immutable, so one object serves all.
    Raises NotDirectlyReadable (or IndexError, UnicodeDecodeError, OverflowError: the codec
    treats every exception alike) if the body is not one, or not one this reader is sure about.
    """
    event_id, pos = _string(data, start)
    account_id, pos = _string(data, pos)
    version, pos = _long(data, pos)
    command_id, pos = _string(data, pos)
    command_fingerprint, pos = _string(data, pos)
    millis, pos = _long(data, pos)
    # Branch b of the payload union is the zigzag varint 2b: one byte for each of our branches.
    branch = data[pos]
    pos += 1
    event: Any
    if branch == 2 or branch == 4:  # MoneyDeposited, MoneyWithdrawn
        amount, pos = _long(data, pos)
        event = _new(records.MoneyDeposited if branch == 2 else records.MoneyWithdrawn)
        _set(event, "amount", amount)
    elif branch in _TRANSFER_BRANCHES:
        amount, pos = _long(data, pos)
        transfer_id, pos = _string(data, pos)
        counterparty_id, pos = _string(data, pos)
        event = _new(_TRANSFER_BRANCHES[branch])
        _set(event, "amount", amount)
        _set(event, "transfer_id", transfer_id)
        _set(event, "counterparty_id", counterparty_id)
        if branch == 16:  # TransferRefunded
            reason, pos = _string(data, pos)
            _set(event, "reason", reason)
    elif branch == 0:  # AccountOpened
        currency, pos = _string(data, pos)
        owner, pos = _string(data, pos)
        owner_sealed, pos = _bytes(data, pos)
        event = _new(records.AccountOpened)
        _set(event, "currency", currency)
        _set(event, "owner", owner)
        _set(event, "owner_sealed", owner_sealed)
    elif branch == 10:  # AccountClosed
        event = _new(records.AccountClosed)
    elif branch == 12:  # OwnerErased
        event = _new(records.OwnerErased)
    else:
        raise NotDirectlyReadable(f"payload branch byte {branch}")
    nullable = data[pos]
    if nullable == 2:
        balance_after, pos = _long(data, pos + 1)
    elif nullable == 0:
        balance_after, pos = None, pos + 1
    else:
        raise NotDirectlyReadable(f"balance_after branch byte {nullable}")
    # Nearly always empty: one zero byte each.
    if data[pos] == 0:
        reference, pos = "", pos + 1
    else:
        reference, pos = _string(data, pos)
    if data[pos] == 0:
        memo, pos = "", pos + 1
    else:
        memo, pos = _string(data, pos)
    if pos != len(data):
        raise NotDirectlyReadable("bytes after the body")
    occurred_at = times.get(millis)
    if occurred_at is None:
        occurred_at = times[millis] = _EPOCH + timedelta(microseconds=millis * 1000)
    # The records' own __init__ is skipped (it is most of the cost): it only assigns, and its
    # __post_init__ checks hold by construction (UTC, whole milliseconds).
    _set(event, "event_id", event_id)
    _set(event, "account_id", account_id)
    _set(event, "version", version)
    _set(event, "command_id", command_id)
    _set(event, "command_fingerprint", command_fingerprint)
    _set(event, "occurred_at", occurred_at)
    _set(event, "balance_after", balance_after)
    _set(event, "reference", reference)
    _set(event, "memo", memo)
    result: records.Event = event
    return result
