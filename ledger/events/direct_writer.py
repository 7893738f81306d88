"""Writes event records as Avro bodies of exactly the current schema, without fastavro.

The mirror of direct_reader.py: fastavro's writer takes a dict per event (`to_datum`) and walks
the schema for every one, which made encoding most of the cost of producing an event in the
command server's writer (docs/performance.md, "What changed in the batch path"). This module
writes the fields in `direct_reader.LAYOUT`'s order straight from the record: longs as zigzag
varints, strings and bytes with their length, the payload union's branch, the nullable balance,
the reference and the memo.

The codec uses it only while the current schema has that layout (the same check as for the
reader), and falls back to fastavro for any event it does not write (`NotDirectlyWritable`: a
long outside 64 bits, a string that is not UTF-8-encodable), so that such an event fails, or
not, exactly as it did. tests/unit/test_codec_direct_writer.py holds its bytes equal to
fastavro's.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ledger.events import records
from ledger.events.avro_mapping import EVENT_TYPES

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MIN_LONG = -(2**63)
_MAX_LONG = 2**63 - 1

_STRING, _LONG, _BYTES = range(3)
_KINDS = {"string": _STRING, "long": _LONG, "bytes": _BYTES}


class NotDirectlyWritable(ValueError):
    """An event this writer does not write as fastavro would; fastavro decides."""


def _payload_plan(
    layout: Any,
) -> dict[type[records.Event], tuple[int, tuple[tuple[str, int], ...]]]:
    """Per event class: its union branch byte (zigzag of the branch index) and its own fields
    with their kinds, from the layout's payload branches (in EVENT_TYPES' order)."""
    branches = dict(layout)["payload"]
    return {
        event_type: (2 * index, tuple((name, _KINDS[kind]) for name, kind in fields))
        for index, (event_type, (_name, fields)) in enumerate(
            zip(EVENT_TYPES, branches, strict=True)
        )
    }


class DirectWriter:
    """Encodes events of the layout it was made for (`direct_reader.LAYOUT`)."""

    def __init__(self, layout: Any) -> None:
        self._payloads = _payload_plan(layout)

    def body(self, event: records.Event, out: bytearray) -> None:
        """Append `event`'s Avro body to `out`; NotDirectlyWritable if fastavro must decide."""
        try:
            branch, fields = self._payloads[type(event)]
            _string(out, event.event_id)
            _string(out, event.account_id)
            _long(out, event.version)
            _string(out, event.command_id)
            _string(out, event.command_fingerprint)
            delta = event.occurred_at - _EPOCH
            # fastavro's timestamp-millis for an aware datetime, to the millisecond.
            _long(out, (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000)
            out.append(branch)
            for name, kind in fields:
                value = getattr(event, name)
                if kind == _LONG:
                    _long(out, value)
                elif kind == _STRING:
                    _string(out, value)
                else:
                    _long(out, len(value))
                    out += value
            balance = event.balance_after
            if balance is None:
                out.append(0)
            else:
                out.append(2)
                _long(out, balance)
            _string(out, event.reference)
            _string(out, event.memo)
        except (UnicodeEncodeError, TypeError, AttributeError, KeyError) as exc:
            raise NotDirectlyWritable(repr(exc)) from None


def _long(out: bytearray, value: int) -> None:
    if not _MIN_LONG <= value <= _MAX_LONG or type(value) is not int:
        raise NotDirectlyWritable(f"not a 64-bit long: {value!r}")
    zigzag = (value << 1) ^ (value >> 63)
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)


def _string(out: bytearray, value: str) -> None:
    if type(value) is not str:
        raise NotDirectlyWritable(f"not a string: {type(value).__name__}")
    raw = value.encode()
    size = len(raw)
    if size < 64:
        out.append(size << 1)  # the zigzag varint of a length under 64 is one byte
    else:
        _long(out, size)
    out += raw
