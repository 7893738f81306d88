"""The `transfers` rows a batch writes: one per transfer id, filled by whichever of its events
the batch holds (docs/design.md, decision 13).

The events of one transfer sit in different partitions (the debited and the credited account's),
which the projector applies independently and in any order, so each event fills only its own
columns and the upsert (batch_writes.py) keeps what an earlier batch filled: the row is the
same whatever order the events are applied in. Within a batch the events of one transfer are
merged here, since one statement may not upsert a row twice.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from ledger.events.records import TransferCredited, TransferDebited, TransferRefunded, TransferSent
from projector.sql_rows import Rows, major, time_from_micros

TRANSFER_COLUMNS = (
    "transfer_id",
    "from_account_id",
    "to_account_id",
    "currency",
    "amount",
    "exponent",
    "cross_shard",
    "sent_us",
    "credited_us",
    "refunded_us",
    "refund_reason",
)
_FILLED_BY_EVENT = range(6, len(TRANSFER_COLUMNS))
"""The columns an event fills only if it is of the right kind (the others all fill alike)."""

TransferLeg: TypeAlias = TransferDebited | TransferCredited | TransferSent | TransferRefunded


def add_leg(
    transfers: dict[str, list[Any]],
    event: TransferLeg,
    currency: str,
    exponent: int,
    micros: int,
) -> None:
    """Merges `event` (at `micros` since the epoch) into its transfer's row in `transfers`."""
    incoming = isinstance(event, TransferCredited)
    from_id, to_id = (
        (event.counterparty_id, event.account_id)
        if incoming
        else (event.account_id, event.counterparty_id)
    )
    cross_shard = sent = credited = refunded = reason = None
    if isinstance(event, TransferDebited | TransferSent):
        cross_shard, sent = isinstance(event, TransferSent), micros
    elif incoming:
        credited = micros
    else:
        assert isinstance(event, TransferRefunded)
        refunded, reason = micros, event.reason
    row = [
        event.transfer_id,
        from_id,
        to_id,
        currency,
        event.amount,
        exponent,
        cross_shard,
        sent,
        credited,
        refunded,
        reason,
    ]
    known = transfers.get(event.transfer_id)
    if known is None:
        transfers[event.transfer_id] = row
        return
    for column in _FILLED_BY_EVENT:
        if known[column] is None:
            known[column] = row[column]


# Each event fills its own columns; what an earlier batch filled stays (transfer_rows.py). In
# key order, so that two workers upserting the same transfers never wait on each other in turn.
_TRANSFER_TYPES = {
    "transfer_id": "text",
    "from_account_id": "text",
    "to_account_id": "text",
    "currency": "text",
    "amount": "bigint",
    "exponent": "integer",
    "cross_shard": "boolean",
    "sent_us": "bigint",
    "credited_us": "bigint",
    "refunded_us": "bigint",
    "refund_reason": "text",
}
TRANSFERS = Rows(
    "transfers",
    tuple((name, _TRANSFER_TYPES[name]) for name in TRANSFER_COLUMNS),
    f"""
INSERT INTO transfers AS t (transfer_id, from_account_id, to_account_id, currency, amount,
                            cross_shard, sent_at, credited_at, refunded_at, refund_reason)
SELECT transfer_id, from_account_id, to_account_id, currency, {major("amount")}, cross_shard,
       {time_from_micros("sent_us")}, {time_from_micros("credited_us")},
       {time_from_micros("refunded_us")}, refund_reason
FROM {{rows}}
ORDER BY transfer_id
ON CONFLICT (transfer_id) DO UPDATE SET
    cross_shard = coalesce(t.cross_shard, EXCLUDED.cross_shard),
    sent_at = coalesce(t.sent_at, EXCLUDED.sent_at),
    credited_at = coalesce(t.credited_at, EXCLUDED.credited_at),
    refunded_at = coalesce(t.refunded_at, EXCLUDED.refunded_at),
    refund_reason = coalesce(t.refund_reason, EXCLUDED.refund_reason)
""",
)
