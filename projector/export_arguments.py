"""What `python -m projector export` accepts, checked before anything is imported or connected
(cli.py imports this module alone: pyarrow takes a while to import)."""

from __future__ import annotations

from datetime import datetime

FORMATS = ("parquet", "csv")


def parse_at(text: str) -> datetime:
    """`--at`: an ISO 8601 timestamp with a time zone (`2026-03-31T23:59:59.999Z`,
    `2026-04-01T01:00:00+02:00`). Raises ValueError with a message for a person."""
    example = "e.g. 2026-03-31T23:59:59.999Z"
    try:
        at = datetime.fromisoformat(text.strip())
    except ValueError:
        raise ValueError(f"{text[:80]!r} is not an ISO 8601 timestamp ({example})") from None
    if at.tzinfo is None or at.utcoffset() is None:
        raise ValueError(
            f"{text[:80]!r} has no time zone: add Z for UTC or an offset such as +02:00 ({example})"
        )
    return at
