"""What the read model's columns can hold, checked for each event before anything is written.

The command server never writes an event outside these bounds (its edge refuses such fields),
but the log is the source of truth and an older or buggy writer may have: an event the read
model cannot store must stop the projector as a contradiction (exit 3, not restarted), never
fail inside PostgreSQL and restart the worker forever.
"""

from __future__ import annotations

import re

from ledger.domain.money import currency_exponent
from ledger.domain.rejection import Rejection
from ledger.events.records import AccountOpened, Event, TransferCredited, TransferDebited

MAX_STORED_ID_LENGTH = 512
"""Account ids are B-tree keys (at most ~2700 bytes per entry): 512 characters of up to four
UTF-8 bytes each always fit. The command server allows 64."""

# movements.event_id is a `uuid` column.
_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}")


def unstorable(event: Event) -> str | None:
    """Why the read model cannot store `event`, or None if it can (runs once per event)."""
    if _UUID.fullmatch(event.event_id) is None:
        return f"event_id {shown(event.event_id)} is not a UUID (movements.event_id is uuid)"
    ids: tuple[tuple[str, str], ...] = (("account_id", event.account_id),)
    texts: tuple[tuple[str, str], ...] = (("command_id", event.command_id),)
    if isinstance(event, AccountOpened):
        try:
            currency_exponent(event.currency)
        except Rejection as error:
            return f"currency: {error.message} (amounts are stored with its decimal places)"
        texts += (("owner", event.owner),)
    elif isinstance(event, TransferDebited | TransferCredited):
        ids += (("counterparty_id", event.counterparty_id),)
        texts += (("transfer_id", event.transfer_id),)
    for field, text in ids:
        if len(text) > MAX_STORED_ID_LENGTH:
            return (
                f"{field} is {len(text)} characters long, more than an indexed id may be "
                f"({MAX_STORED_ID_LENGTH})"
            )
    for field, text in ids + texts:
        if "\x00" in text:
            return f"{field} {shown(text)} contains NUL, which PostgreSQL text cannot hold"
    return None


def shown(text: str) -> str:
    """`text` as a message may repeat it: quoted, escaped, at most 80 characters."""
    return repr(text) if len(text) <= 80 else repr(text[:80]) + "..."
