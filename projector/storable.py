"""What the read model's columns can hold, checked for each event before anything is written.

The command server never writes an event outside these bounds (its edge refuses such fields),
but the log is the source of truth and an older or buggy writer may have: an event the read
model cannot store must stop the projector as a contradiction (exit 3, not restarted), never
fail inside PostgreSQL and restart the worker forever.
"""

from __future__ import annotations

import re

from ledger.domain.money import currency_exponent, known_currencies
from ledger.domain.rejection import Rejection
from ledger.events.records import (
    AccountOpened,
    Event,
    TransferCredited,
    TransferDebited,
    TransferRefunded,
    TransferSent,
)

MAX_STORED_ID_LENGTH = 512
"""Account ids are B-tree keys (at most ~2700 bytes per entry): 512 characters of up to four
UTF-8 bytes each always fit. The command server allows 64."""

_TRANSFERS = (TransferDebited, TransferCredited, TransferSent, TransferRefunded)
_KNOWN_CURRENCIES = known_currencies()
# movements.event_id is a `uuid` column. The command server writes the canonical form, which is
# quicker to match; `_why` then accepts the other spellings PostgreSQL takes.
_CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_UUID = re.compile(r"[0-9a-fA-F]{8}(?:-?[0-9a-fA-F]{4}){3}-?[0-9a-fA-F]{12}")


def unstorable(event: Event) -> str | None:
    """Why the read model cannot store `event`, or None if it can.

    Runs once per event of a catch-up: the common case is one pass over the strings joined
    (a microsecond or less), and only a suspect event gets the field-by-field `_why`."""
    kind = type(event)
    account_id = event.account_id
    # A movement's reference is an indexed key (movements_account_reference), its memo text.
    reference = event.reference
    if kind is AccountOpened:
        opened: AccountOpened = event  # type: ignore[assignment]
        text = account_id + event.command_id + opened.owner
        suspect = opened.currency not in _KNOWN_CURRENCIES
    elif kind in _TRANSFERS:
        transfer: TransferDebited = event  # type: ignore[assignment]
        text = account_id + event.command_id + transfer.counterparty_id + transfer.transfer_id
        if isinstance(event, TransferRefunded):
            text += event.reason
        # Both are B-tree keys (transfer_id: of `transfers`, migration 0007).
        suspect = (
            len(transfer.counterparty_id) > MAX_STORED_ID_LENGTH
            or len(transfer.transfer_id) > MAX_STORED_ID_LENGTH
        )
    else:
        text = account_id + event.command_id
        suspect = False
    text += reference + event.memo
    if (
        suspect
        or len(reference) > MAX_STORED_ID_LENGTH
        or "\x00" in text
        or len(account_id) > MAX_STORED_ID_LENGTH
        or _CANONICAL_UUID.fullmatch(event.event_id) is None
    ):
        return _why(event)
    return None


def _why(event: Event) -> str | None:
    """`unstorable`, field by field, naming the first field the read model cannot hold."""
    if _UUID.fullmatch(event.event_id) is None:
        return f"event_id {shown(event.event_id)} is not a UUID (movements.event_id is uuid)"
    ids: tuple[tuple[str, str], ...] = (
        ("account_id", event.account_id),
        ("reference", event.reference),
    )
    texts: tuple[tuple[str, str], ...] = (("command_id", event.command_id), ("memo", event.memo))
    if isinstance(event, AccountOpened):
        try:
            currency_exponent(event.currency)
        except Rejection as error:
            return f"currency: {error.message} (amounts are stored with its decimal places)"
        texts += (("owner", event.owner),)
    elif isinstance(event, _TRANSFERS):
        ids += (("counterparty_id", event.counterparty_id), ("transfer_id", event.transfer_id))
        if isinstance(event, TransferRefunded):
            texts += (("reason", event.reason),)
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
