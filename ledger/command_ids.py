"""Command ids: UUIDv7 (RFC 9562), whose first 48 bits are the time the client created the command.

The time in an id is what lets the command server tell a retry it no longer remembers from a new
command (docs/design.md, decision 4), so every client makes its ids this way.
"""

from __future__ import annotations

import secrets
import time
import uuid
from datetime import UTC, datetime

_VERSION = 7
_VARIANT_RFC_9562 = 0b10


def new_command_id(at_ms: int | None = None) -> str:
    """A fresh UUIDv7 in its canonical text form, stamped with `at_ms` (default: now)."""
    millis = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    value = (
        (millis & (2**48 - 1)) << 80
        | _VERSION << 76
        | secrets.randbits(12) << 64
        | _VARIANT_RFC_9562 << 62
        | secrets.randbits(62)
    )
    return str(uuid.UUID(int=value))


def command_id_time(command_id: str) -> datetime | None:
    """When the client created the command, read from its id; None if it is not a UUIDv7."""
    try:
        parsed = uuid.UUID(command_id)
    except ValueError:
        return None
    if parsed.version != _VERSION or str(parsed) != command_id.lower():
        return None
    return datetime.fromtimestamp((parsed.int >> 80) / 1000, tz=UTC)
