"""Command ids: UUIDv7 (RFC 9562), as the servers require, made here without the server's code.

The first 48 bits are the creation time in milliseconds: the command server uses it to tell a
retry it no longer remembers (refused "too old to deduplicate") from a new command.
"""

from __future__ import annotations

import secrets
import time
import uuid


def new_command_id() -> str:
    """A fresh UUIDv7 in canonical lowercase text: 48 bits of Unix milliseconds, version 7,
    74 random bits, variant 0b10."""
    millis = time.time_ns() // 1_000_000
    value = (
        (millis & (2**48 - 1)) << 80
        | 7 << 76
        | secrets.randbits(12) << 64
        | 0b10 << 62
        | secrets.randbits(62)
    )
    return str(uuid.UUID(int=value))
