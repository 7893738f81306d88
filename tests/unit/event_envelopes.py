"""The fields every event carries, for tests that build events by hand and care about the rest."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from ledger.events.records import event_id_for


def envelope(
    account_id: str,
    version: int,
    at: datetime,
    *,
    event_id: str | None = None,
    command_id: str | None = None,
    fingerprint: str = "f",
) -> dict[str, Any]:
    """An event's common fields; the ids follow from the account and version unless given."""
    return {
        "event_id": event_id_for(account_id, version) if event_id is None else event_id,
        "account_id": account_id,
        "version": version,
        "command_id": f"c{version}" if command_id is None else command_id,
        "command_fingerprint": fingerprint,
        "occurred_at": at,
    }
