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

from collections.abc import Callable
from datetime import UTC, datetime
from operator import attrgetter
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


_ENVELOPE = attrgetter(
    "event_id",
    "account_id",
    "version",
    "command_id",
    "command_fingerprint",
    "occurred_at",
    "balance_after",
    "reference",
    "memo",
)
_SMALL = 1 << 14
"""Zigzag values and lengths below this have their varint looked up (one or two bytes)."""


class DirectWriter:
    """Encodes events of the layout it was made for (`direct_reader.LAYOUT`)."""

    def __init__(self, layout: Any) -> None:
        self._payloads = _payload_plan(layout)
        self._varints = [_varint(zigzag) for zigzag in range(_SMALL)]
        """The varint of every zigzag value (or length * 2) below _SMALL."""
        self._fast = {
            event_type: (bytes((branch,)), self._payload_writer(fields))
            for event_type, (branch, fields) in self._payloads.items()
        }
        self._time: tuple[datetime, bytes] | None = None
        """The last `occurred_at` written and its varint: a batch's events share their time."""

    def value(self, header: bytes, event: records.Event) -> bytes:
        """`header` and `event`'s Avro body: what `body` writes, in fewer steps for the events
        the command server writes (strings and lengths of common sizes, the batch's shared
        time). Anything out of the ordinary goes through `body`, which checks every field and
        raises NotDirectlyWritable for what fastavro must decide; a property test holds the
        two equal (tests/unit/test_codec_direct_writer.py)."""
        try:
            return self._value(header, event)
        except (UnicodeEncodeError, TypeError, AttributeError, KeyError, IndexError):
            pass
        out = bytearray(header)
        self.body(event, out)
        return bytes(out)

    def _value(self, header: bytes, event: records.Event) -> bytes:
        branch, payload = self._fast[type(event)]
        event_id, account_id, version, command_id, fingerprint, occurred, balance, ref, memo = (
            _ENVELOPE(event)
        )
        if not (
            type(event_id) is str
            and type(account_id) is str
            and type(command_id) is str
            and type(fingerprint) is str
            and type(ref) is str
            and type(memo) is str
        ):
            raise TypeError("not a string")
        last = self._time
        if last is not None and occurred == last[0]:
            time = last[1]
        else:
            delta = occurred - _EPOCH
            time = _long_bytes(
                (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000,
                self._varints,
            )
            self._time = occurred, time
        varints = self._varints
        event_id, account_id = event_id.encode(), account_id.encode()
        command_id, fingerprint = command_id.encode(), fingerprint.encode()
        ref, memo = ref.encode(), memo.encode()
        return b"".join(
            (
                header,
                varints[len(event_id) << 1],
                event_id,
                varints[len(account_id) << 1],
                account_id,
                _long_bytes(version, varints),
                varints[len(command_id) << 1],
                command_id,
                varints[len(fingerprint) << 1],
                fingerprint,
                time,
                branch,
                payload(event),
                b"\x00" if balance is None else b"\x02" + _long_bytes(balance, varints),
                varints[len(ref) << 1],
                ref,
                varints[len(memo) << 1],
                memo,
            )
        )

    def _payload_writer(
        self, fields: tuple[tuple[str, int], ...]
    ) -> Callable[[records.Event], bytes]:
        """The payload's bytes of one event type, field by field."""
        varints = self._varints

        def long(value: int) -> bytes:
            return _long_bytes(value, varints)

        def text(value: str) -> bytes:
            if type(value) is not str:
                raise TypeError("not a string")
            raw = value.encode()
            return varints[len(raw) << 1] + raw

        def raw(value: bytes) -> bytes:
            if type(value) is not bytes:
                raise TypeError("not bytes")
            return varints[len(value) << 1] + value

        writers: dict[int, Callable[[Any], bytes]] = {_LONG: long, _STRING: text, _BYTES: raw}
        if not fields:
            return lambda _event: b""
        if len(fields) == 1:
            ((name, kind),) = fields
            get_one, write_one = attrgetter(name), writers[kind]
            return lambda event: write_one(get_one(event))
        get = attrgetter(*(name for name, _kind in fields))
        write = tuple(writers[kind] for _name, kind in fields)
        return lambda event: b"".join(
            [each(value) for each, value in zip(write, get(event), strict=True)]
        )

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


def _long_bytes(value: int, varints: list[bytes]) -> bytes:
    """The zigzag varint of a long; `varints` holds those of the zigzag values below _SMALL."""
    if type(value) is not int or not _MIN_LONG <= value <= _MAX_LONG:
        raise TypeError("not a 64-bit long")  # `body` says so, or fastavro does
    zigzag = (value << 1) ^ (value >> 63)
    return varints[zigzag] if zigzag < _SMALL else _varint(zigzag)


def _varint(zigzag: int) -> bytes:
    out = bytearray()
    while zigzag > 0x7F:
        out.append((zigzag & 0x7F) | 0x80)
        zigzag >>= 7
    out.append(zigzag)
    return bytes(out)


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
