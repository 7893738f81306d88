"""The read model's SQL: every statement the projector runs inside a batch transaction.

Names are unqualified: the connection's search_path picks the schema (`ledger`, or a rebuild's
shadow), and PostgreSQL resolves them again for each statement, which is what lets a rebuild swap
schemas under a running projector (see `rebuild.py`).
"""

from __future__ import annotations

import json
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from ledger.domain.account import Account, AccountStatus
from ledger.domain.money import currency_exponent
from projector.consumed import UndecodableRecord
from projector.projection import MOVEMENT_COLUMNS, Projection, StoredAccount

NOTIFY_CHANNEL = "ledger_checkpoints"
"""Where the query server listens for advanced checkpoints (read-your-writes, WatchAccount)."""

_STATUS_TO_DB = {AccountStatus.OPEN: "OPEN", AccountStatus.CLOSED: "CLOSED"}
_STATUS_FROM_DB = {text: status for status, text in _STATUS_TO_DB.items()}

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
SELECT account_id, currency, owner, status, version, partition, opened_at, closed_at, updated_at,
       (balance * 10::numeric ^ scale(balance))::bigint AS balance_minor,
       scale(balance) AS balance_scale
FROM accounts WHERE account_id = ANY($1::text[])
"""
_ANY_ACCOUNT = "SELECT 1 FROM accounts WHERE account_id = ANY($1::text[]) LIMIT 1"
# Rows are staged with COPY (binary, far cheaper to encode than query parameters) in temporary
# tables, with money in minor units and the currency's exponent; the INSERTs below turn that
# into exact NUMERIC with the currency's scale. Truncated at the start of each batch rather than
# on commit, because a rebuild's catch-up applies several batches in one transaction.
_STAGING = """
CREATE TEMP TABLE IF NOT EXISTS staged_movements (
    event_id uuid, account_id text, version bigint, kind text, amount bigint,
    balance_after bigint, exponent integer, occurred_us bigint, counterparty_id text,
    transfer_id text, command_id text, partition integer, "offset" bigint);
CREATE TEMP TABLE IF NOT EXISTS staged_accounts (
    account_id text, currency text, owner text, status text, balance bigint, exponent integer,
    version bigint, partition integer, opened_at timestamptz, closed_at timestamptz,
    updated_at timestamptz);
CREATE TEMP TABLE IF NOT EXISTS staged_days (
    account_id text, day date, currency text, inflow bigint, outflow bigint, exponent integer,
    movement_count integer, closing_balance bigint);
TRUNCATE pg_temp.staged_movements, pg_temp.staged_accounts, pg_temp.staged_days;
"""
_ACCOUNT_COLUMNS = (
    "account_id",
    "currency",
    "owner",
    "status",
    "balance",
    "exponent",
    "version",
    "partition",
    "opened_at",
    "closed_at",
    "updated_at",
)
_DAY_COLUMNS = (
    "account_id",
    "day",
    "currency",
    "inflow",
    "outflow",
    "exponent",
    "movement_count",
    "closing_balance",
)


def _major(column: str) -> str:
    """SQL for a staged minor-unit column as NUMERIC in major units with the currency's scale.

    Multiplying by 10^-exponent is exact (NUMERIC products keep every digit), where dividing
    by 10^exponent could round: PostgreSQL picks a division's scale from the operands' sizes.
    """
    return f"round({column}::numeric * 10::numeric ^ (-exponent), exponent)"


# Movement times are staged as microseconds since the epoch: asyncpg encodes a datetime at
# about four times the cost of an integer (~1.4 against ~0.35 µs). Whole seconds and the rest
# apart, so that the arithmetic is exact (a double holds whole seconds times 10^6 exactly, not
# any microsecond count), and no day-sized interval meets the session's time zone.
_TIME_FROM_MICROS = (
    "to_timestamp(occurred_us / 1000000) + (occurred_us % 1000000) * interval '1 microsecond'"
)
_INSERT_MOVEMENTS = f"""
INSERT INTO movements (event_id, account_id, version, kind, amount, balance_after, occurred_at,
                       counterparty_id, transfer_id, command_id, partition, "offset")
SELECT event_id, account_id, version, kind, {_major("amount")}, {_major("balance_after")},
       {_TIME_FROM_MICROS}, counterparty_id, transfer_id, command_id, partition, "offset"
FROM pg_temp.staged_movements
"""
_UPSERT_ACCOUNTS = f"""
INSERT INTO accounts (account_id, currency, owner, status, balance, version, partition,
                      opened_at, closed_at, updated_at)
SELECT account_id, currency, owner, status, {_major("balance")}, version, partition, opened_at,
       closed_at, updated_at
FROM pg_temp.staged_accounts
ON CONFLICT (account_id) DO UPDATE SET
    status = EXCLUDED.status,
    balance = EXCLUDED.balance,
    version = EXCLUDED.version,
    closed_at = EXCLUDED.closed_at,
    updated_at = EXCLUDED.updated_at
"""
# Batches arrive in log order, so the closing balance of a later batch replaces an earlier one.
_UPSERT_DAYS = f"""
INSERT INTO daily_summaries AS s (account_id, day, currency, inflow, outflow, movement_count,
                                  closing_balance)
SELECT account_id, day, currency, {_major("inflow")}, {_major("outflow")}, movement_count,
       {_major("closing_balance")}
FROM pg_temp.staged_days
ON CONFLICT (account_id, day) DO UPDATE SET
    inflow = s.inflow + EXCLUDED.inflow,
    outflow = s.outflow + EXCLUDED.outflow,
    movement_count = s.movement_count + EXCLUDED.movement_count,
    closing_balance = EXCLUDED.closing_balance
"""
_ADVANCE_CHECKPOINTS = """
UPDATE checkpoints AS c SET last_offset = a.last_offset, updated_at = now()
FROM unnest($2::integer[], $3::bigint[]) AS a (partition, last_offset)
WHERE c.topic = $1 AND c.partition = a.partition
"""
_RECORD_DEAD_LETTERS = """
INSERT INTO dead_letters (topic, partition, "offset", error, recorded_at)
SELECT $1, partition, "offset", error, now()
FROM unnest($2::integer[], $3::bigint[], $4::text[]) AS d (partition, "offset", error)
"""


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


async def write(connection: Any, projection: Projection) -> None:
    await connection.execute(_STAGING)
    for table, rows, columns, insert in (
        ("staged_movements", projection.movements, MOVEMENT_COLUMNS, _INSERT_MOVEMENTS),
        ("staged_accounts", _account_rows(projection), _ACCOUNT_COLUMNS, _UPSERT_ACCOUNTS),
        ("staged_days", _day_rows(projection), _DAY_COLUMNS, _UPSERT_DAYS),
    ):
        if rows:
            await connection.copy_records_to_table(
                table, records=rows, columns=columns, schema_name="pg_temp"
            )
            await connection.execute(insert)


async def record_dead_letters(
    connection: Any, topic: str, records: Sequence[UndecodableRecord]
) -> None:
    await connection.execute(
        _RECORD_DEAD_LETTERS,
        topic,
        [record.partition for record in records],
        [record.offset for record in records],
        [record.error for record in records],
    )


async def advance_checkpoints(connection: Any, topic: str, offsets: Mapping[int, int]) -> None:
    """Set the checkpoints of locked rows, and announce them on commit.

    `pg_notify` in the same transaction is delivered exactly when (and only if) it commits, so
    a listener never hears of offsets it cannot read yet.
    """
    partitions = sorted(offsets)
    await connection.execute(
        _ADVANCE_CHECKPOINTS, topic, partitions, [offsets[p] for p in partitions]
    )
    payload = {"topic": topic, "checkpoints": {str(p): offsets[p] for p in partitions}}
    await connection.execute("SELECT pg_notify($1, $2)", NOTIFY_CHANNEL, json.dumps(payload))


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
    return StoredAccount(account, row["partition"], row["closed_at"])


def _account_rows(projection: Projection) -> list[tuple[Any, ...]]:
    rows = []
    for stored in projection.accounts.values():
        account = stored.account
        rows.append(
            (
                account.account_id,
                account.currency,
                account.owner,
                _STATUS_TO_DB[account.status],
                account.balance,
                currency_exponent(account.currency),
                account.version,
                stored.partition,
                account.opened_at,
                stored.closed_at,
                account.updated_at,
            )
        )
    return rows


def _day_rows(projection: Projection) -> list[tuple[Any, ...]]:
    return [
        (
            account_id,
            day,
            totals.currency,
            totals.inflow,
            totals.outflow,
            currency_exponent(totals.currency),
            totals.movement_count,
            totals.closing_balance,
        )
        for (account_id, day), totals in projection.days.items()
    ]
