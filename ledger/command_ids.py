"""Command ids: UUIDv7 (RFC 9562), whose first 48 bits are the time the client created the command.

The time in an id is what lets the command server tell a retry it no longer remembers from a new
command (docs/design.md, decision 4), so every client makes its ids this way.
`python -m ledger.command_ids` prints a new one (for grpcurl and shell scripts).
"""

from __future__ import annotations

import os
import re
import time
from datetime import UTC, datetime

_VERSION = 7
_VARIANT_RFC_9562 = 0b10
_RANDOM_BYTES = 10
"""Per id: 80 random bits, of which 12 fill rand_a and 62 rand_b."""
# Canonical text only: lowercase, so that one command cannot be spelled two ways (a retry in
# capitals would otherwise be a different id, and be applied again).
_CANONICAL_V7 = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def new_command_id(at_ms: int | None = None) -> str:
    """A fresh UUIDv7 in its canonical text form, stamped with `at_ms` (default: now)."""
    return new_command_ids(1, at_ms)[0]


def new_command_ids(count: int, at_ms: int | None = None) -> list[str]:
    """`count` fresh UUIDv7s stamped with `at_ms` (default: now), for a batch of commands.

    The random bits come from the operating system's generator, as `secrets` takes them, in one
    read for all the ids: a load of thousands of commands per call spent more on reading them
    id by id, and on `uuid.UUID`, than on building its requests."""
    millis = time.time_ns() // 1_000_000 if at_ms is None else at_ms
    stamp = (millis & (2**48 - 1)) << 80 | _VERSION << 76 | _VARIANT_RFC_9562 << 62
    random = os.urandom(_RANDOM_BYTES * count)
    ids = []
    for start in range(0, len(random), _RANDOM_BYTES):
        bits = int.from_bytes(random[start : start + _RANDOM_BYTES])
        text = f"{stamp | (bits >> 68) << 64 | bits & (2**62 - 1):032x}"
        ids.append(f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}")
    return ids


def command_id_millis(command_id: str) -> int | None:
    """The id's time in milliseconds since the Unix epoch; None unless it is a canonical UUIDv7."""
    if _CANONICAL_V7.fullmatch(command_id) is None:
        return None
    return int(command_id[:8] + command_id[9:13], 16)


def latest_command_id_millis(command_ids: list[str]) -> int | None:
    """The latest time among the UUIDv7s of `command_ids`; None if none is one.

    Canonical UUIDv7s sort as their times do, so the greatest string is usually the answer, at
    C speed; only a greater id that is no UUIDv7 (ids from before they had to be) needs a scan.
    """
    millis = command_id_millis(max(command_ids, default=""))
    if millis is not None:
        return millis
    times = [t for command_id in command_ids if (t := command_id_millis(command_id)) is not None]
    return max(times, default=None)


def command_id_time(command_id: str) -> datetime | None:
    """When the client created the command, read from its id; None if it is not a UUIDv7."""
    millis = command_id_millis(command_id)
    return None if millis is None else millis_time(millis)


def millis_time(millis: int) -> datetime:
    return datetime.fromtimestamp(millis / 1000, tz=UTC)


def main() -> None:
    print(new_command_id())


if __name__ == "__main__":
    main()
