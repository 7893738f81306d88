"""What the projector reads from the read model: the checkpoints (locked by a batch's
transaction, or read to resume from), and the accounts a batch moves (or whether any exist).

Names are unqualified: the connection's search_path picks the schema (`ledger`, or a rebuild's
shadow), and PostgreSQL resolves them again for each statement, which is what lets a rebuild swap
schemas under a running projector (see `rebuild.py`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from ledger.domain.account import Account
from ledger.domain.money import currency_exponent
from projector.batch_writes import STATUS_TO_DB
from projector.projection import StoredAccount

_STATUS_FROM_DB = {text: status for status, text in STATUS_TO_DB.items()}

_LOCK_CHECKPOINTS = """
SELECT partition, last_offset FROM checkpoints
WHERE topic = $1 AND partition = ANY($2::integer[])
ORDER BY partition
FOR UPDATE
"""
# -1: nothing applied yet. Such a row is only ever committed advanced, because the batch that
# creates it applies at least one record of its partition.
_CREATE_CHECKPOINTS = """
INSERT INTO checkpoints (topic, partition, last_offset, updated_at)
SELECT $1, partition, -1, now() FROM unnest($2::integer[]) AS partition ORDER BY partition
ON CONFLICT DO NOTHING
"""
# Balances come back as minor units: an integer is much cheaper to decode than a Decimal.
_LOAD_ACCOUNTS = """
SELECT account_id, currency, owner, owner_sealed, owner_erased, status, version, partition,
       opened_at, closed_at, updated_at,
       (balance * 10::numeric ^ scale(balance))::bigint AS balance_minor,
       scale(balance) AS balance_scale
FROM accounts WHERE account_id = ANY($1::text[])
"""
_ANY_ACCOUNT = "SELECT 1 FROM accounts WHERE account_id = ANY($1::text[]) LIMIT 1"


async def lock_checkpoints(
    connection: Any, topic: str, partitions: Collection[int]
) -> dict[int, int]:
    """Lock the checkpoint rows of `partitions` for this transaction and return their offsets.

    Whoever holds these locks is the only one applying those partitions: a second projector
    (a zombie after a rebalance, or two instances briefly sharing a partition) waits here and
    then sees the offsets the first one committed.
    """
    wanted = sorted(partitions)
    rows = await connection.fetch(_LOCK_CHECKPOINTS, topic, wanted)
    if len(rows) < len(wanted):
        await connection.execute(_CREATE_CHECKPOINTS, topic, wanted)
        rows = await connection.fetch(_LOCK_CHECKPOINTS, topic, wanted)
    return {row["partition"]: row["last_offset"] for row in rows}


async def read_checkpoints(connection: Any, topic: str) -> dict[int, int]:
    """The committed offsets of every partition with a checkpoint (no lock)."""
    rows = await connection.fetch(
        "SELECT partition, last_offset FROM checkpoints WHERE topic = $1 AND last_offset >= 0",
        topic,
    )
    return {row["partition"]: row["last_offset"] for row in rows}


async def any_account(connection: Any, account_ids: Collection[str]) -> bool:
    """Whether any of `account_ids` has a row."""
    found = await connection.fetchval(_ANY_ACCOUNT, list(account_ids))
    return found is not None


async def load_accounts(connection: Any, account_ids: Collection[str]) -> dict[str, StoredAccount]:
    rows = await connection.fetch(_LOAD_ACCOUNTS, list(account_ids))
    return {row["account_id"]: _stored_account(row) for row in rows}


def _stored_account(row: Any) -> StoredAccount:
    currency = row["currency"]
    if row["balance_scale"] != currency_exponent(currency):
        raise ValueError(
            f"account {row['account_id']!r} has a balance with {row['balance_scale']} decimal "
            f"places, but {currency} has {currency_exponent(currency)}"
        )
    account = Account(
        account_id=row["account_id"],
        currency=currency,
        owner=row["owner"],
        status=_STATUS_FROM_DB[row["status"]],
        balance=row["balance_minor"],
        version=row["version"],
        opened_at=row["opened_at"],
        updated_at=row["updated_at"],
    )
    return StoredAccount(
        account, row["partition"], row["closed_at"], row["owner_sealed"], row["owner_erased"]
    )
