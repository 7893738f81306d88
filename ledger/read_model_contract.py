"""What the projector, which writes the read model, and the query server, which reads it, must
agree on: the schema the read model lives in, the channel checkpoints are announced on, and the
announcement's payload.

The projector NOTIFYs on `NOTIFY_CHANNEL`, in the transaction that commits a batch (so the
notification is delivered only once what it reports is visible, docs/design.md, decision 9), a
JSON object (built in SQL by projector/batch_writes.py, `announcement`):

    {"topic": "<topic>", "schema": "<schema>", "checkpoints": {"<partition>": <offset>, ...}}

- `topic`: the event topic the batch came from;
- `schema`: the schema the batch was written to: `SCHEMA`, or a rebuild's shadow schema, whose
  progress is not the live read model's; a payload without it counts as `SCHEMA`'s;
- `checkpoints`: the last applied offset of each partition the batch advanced, partitions as
  decimal strings (JSON object keys), offsets as integers.

`parse_notification` is the query server's reading of it.
"""

from __future__ import annotations

import json

SCHEMA = "ledger"
"""The PostgreSQL schema holding the live read model (the query server's search_path)."""

ANALYTICS_SCHEMA = "ledger_analytics"
"""The analysts' stable views over `SCHEMA` (projector/migrations/0004_analytics_views.sql),
which no rebuild renames (README, "Analysts' access")."""

NOTIFY_CHANNEL = "ledger_checkpoints"
"""Where the projector announces advanced checkpoints (read-your-writes, WatchAccount)."""


class MalformedNotification(ValueError):
    """A payload on the channel that is not what the projector sends."""


def parse_notification(payload: str, topic: str) -> dict[int, int] | None:
    """The checkpoints a NOTIFY payload reports for `topic` in the live schema; None if it is
    about another topic or schema."""
    try:
        document = json.loads(payload)
    except ValueError:
        raise MalformedNotification(f"not JSON: {payload[:200]!r}") from None
    if not isinstance(document, dict) or not isinstance(document.get("topic"), str):
        raise MalformedNotification(f"no topic: {payload[:200]!r}")
    if document["topic"] != topic:
        return None
    if document.get("schema", SCHEMA) != SCHEMA:
        return None
    reported = document.get("checkpoints")
    if not isinstance(reported, dict):
        raise MalformedNotification(f"no checkpoints object: {payload[:200]!r}")
    checkpoints = {}
    for partition, offset in reported.items():
        if not (isinstance(partition, str) and partition.isascii() and partition.isdigit()):
            raise MalformedNotification(f"partition {partition!r} is not a number")
        if type(offset) is not int:
            raise MalformedNotification(f"offset {offset!r} is not an integer")
        checkpoints[int(partition)] = offset
    return checkpoints
