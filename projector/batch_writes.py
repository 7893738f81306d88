"""How a batch's rows reach their tables, and its checkpoints move, inside its transaction.

A live projector's batches are small (often a single event), and their latency is what a reader
waiting on a consistency token sees; a catch-up's are large, and their throughput is what
counts. So a small batch goes in one statement, its rows passed as arrays (one round trip for
everything: movements, accounts, daily summaries, checkpoints and the NOTIFY), while a large
one is staged with binary COPY (far cheaper per row than query parameters) in temporary tables
and moved on from there. Both paths run the same INSERTs, only their row source differs.

Names are unqualified: the connection's search_path picks the schema (see reads.py).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from ledger.domain.account import AccountStatus
from ledger.domain.money import currency_exponent
from ledger.read_model_contract import NOTIFY_CHANNEL
from projector.consumed import UndecodableRecord
from projector.projection import MOVEMENT_COLUMNS, Projection
from projector.sql_rows import TIME_FROM_MICROS, Rows, major
from projector.transfer_rows import TRANSFERS

INLINE_MAX_ROWS = 900
"""Batches of at most this many rows (movements, accounts and daily summaries together) are
written in one statement; larger ones are staged with COPY. Where the two paths cost the same,
from their timings in docs/performance.md, "Visibility: one statement per live batch"."""

STATUS_TO_DB = {AccountStatus.OPEN: "OPEN", AccountStatus.CLOSED: "CLOSED"}


_MOVEMENT_TYPES = {
    "event_id": "uuid",
    "account_id": "text",
    "version": "bigint",
    "kind": "text",
    "amount": "bigint",
    "balance_after": "bigint",
    "exponent": "integer",
    "occurred_us": "bigint",
    "counterparty_id": "text",
    "transfer_id": "text",
    "command_id": "text",
    "partition": "integer",
    "offset": "bigint",
    "reference": "text",
    "memo": "text",
}
_MOVEMENTS = Rows(
    "movements",
    tuple((name, _MOVEMENT_TYPES[name]) for name in MOVEMENT_COLUMNS),
    f"""
INSERT INTO movements (event_id, account_id, version, kind, amount, balance_after, occurred_at,
                       counterparty_id, transfer_id, command_id, partition, "offset", reference,
                       memo)
SELECT event_id, account_id, version, kind, {major("amount")}, {major("balance_after")},
       {TIME_FROM_MICROS}, counterparty_id, transfer_id, command_id, partition, "offset",
       reference, memo
FROM {{rows}}
""",
)
_ACCOUNTS = Rows(
    "accounts",
    (
        ("account_id", "text"),
        ("currency", "text"),
        ("owner", "text"),
        ("owner_sealed", "bytea"),
        ("owner_erased", "boolean"),
        ("status", "text"),
        ("balance", "bigint"),
        ("exponent", "integer"),
        ("version", "bigint"),
        ("partition", "integer"),
        ("opened_at", "timestamptz"),
        ("closed_at", "timestamptz"),
        ("updated_at", "timestamptz"),
    ),
    f"""
INSERT INTO accounts (account_id, currency, owner, owner_sealed, owner_erased, status, balance,
                      version, partition, opened_at, closed_at, updated_at)
SELECT account_id, currency, owner, owner_sealed, owner_erased, status, {major("balance")},
       version, partition, opened_at, closed_at, updated_at
FROM {{rows}}
ON CONFLICT (account_id) DO UPDATE SET
    owner = EXCLUDED.owner,
    owner_sealed = EXCLUDED.owner_sealed,
    owner_erased = EXCLUDED.owner_erased,
    status = EXCLUDED.status,
    balance = EXCLUDED.balance,
    version = EXCLUDED.version,
    closed_at = EXCLUDED.closed_at,
    updated_at = EXCLUDED.updated_at
""",
)
# Batches arrive in log order, so the closing balance of a later batch replaces an earlier one.
_DAYS = Rows(
    "days",
    (
        ("account_id", "text"),
        ("day", "date"),
        ("currency", "text"),
        ("inflow", "bigint"),
        ("outflow", "bigint"),
        ("exponent", "integer"),
        ("movement_count", "integer"),
        ("closing_balance", "bigint"),
    ),
    f"""
INSERT INTO daily_summaries AS s (account_id, day, currency, inflow, outflow, movement_count,
                                  closing_balance)
SELECT account_id, day, currency, {major("inflow")}, {major("outflow")}, movement_count,
       {major("closing_balance")}
FROM {{rows}}
ON CONFLICT (account_id, day) DO UPDATE SET
    inflow = s.inflow + EXCLUDED.inflow,
    outflow = s.outflow + EXCLUDED.outflow,
    movement_count = s.movement_count + EXCLUDED.movement_count,
    closing_balance = EXCLUDED.closing_balance
""",
)
# Each second's totals, and the minute's and the day's they roll up into (projection.py keeps
# seconds only: one dictionary entry per event is what the catch-up's hot loop can afford).
_PERIODS = Rows(
    "periods",
    (
        ("width", "text"),
        ("period_s", "bigint"),
        ("currency", "text"),
        ("partition", "integer"),
        ("inflow", "bigint"),
        ("outflow", "bigint"),
        ("exponent", "integer"),
        ("movement_count", "bigint"),
        ("opened_count", "bigint"),
        ("closed_count", "bigint"),
        ("transferred_out", "bigint"),
        ("transferred_in", "bigint"),
    ),
    f"""
INSERT INTO currency_totals AS t (width, period_start, currency, partition, inflow, outflow,
                                  movement_count, opened_count, closed_count, transferred_out,
                                  transferred_in)
SELECT width, to_timestamp(period_s), currency, partition, {major("inflow")},
       {major("outflow")}, movement_count, opened_count, closed_count,
       {major("transferred_out")}, {major("transferred_in")}
FROM {{rows}}
ON CONFLICT (width, period_start, currency, partition) DO UPDATE SET
    inflow = t.inflow + EXCLUDED.inflow,
    outflow = t.outflow + EXCLUDED.outflow,
    movement_count = t.movement_count + EXCLUDED.movement_count,
    opened_count = t.opened_count + EXCLUDED.opened_count,
    closed_count = t.closed_count + EXCLUDED.closed_count,
    transferred_out = t.transferred_out + EXCLUDED.transferred_out,
    transferred_in = t.transferred_in + EXCLUDED.transferred_in
""",
)
_WIDTHS = (("second", 1), ("minute", 60), ("day", 86_400))
_ALL_ROWS = (_MOVEMENTS, _ACCOUNTS, _DAYS, _PERIODS, TRANSFERS)
_RECORD_DEAD_LETTERS = """
INSERT INTO dead_letters (topic, partition, "offset", error, recorded_at)
SELECT $1, partition, "offset", error, now()
FROM unnest($2::integer[], $3::bigint[], $4::text[]) AS d (partition, "offset", error)
"""


def announcement(topic: str, schema: str, checkpoints: str) -> str:
    """SQL sending the NOTIFY that readers wake on, with the payload of
    ledger/read_model_contract.py: `checkpoints` is a row source of (partition, last_offset);
    the others are SQL expressions.

    The payload names the schema: a rebuild's shadow (its own search_path) may run ahead of the
    live schema, and the query server must not take its progress for the live one's.
    """
    return f"""SELECT pg_notify('{NOTIFY_CHANNEL}', json_build_object(
    'topic', {topic}::text,
    'schema', {schema},
    'checkpoints', (SELECT coalesce(json_object_agg(partition::text, last_offset), '{{}}')
                    FROM {checkpoints}))::text)"""


def _advance_and_announce(first: int) -> str:
    """Sets the checkpoints of the (locked) rows and NOTIFYs what it set, under the schema the
    batch went to; parameters from $first: topic, partitions, offsets.

    `pg_notify` in the batch's transaction is delivered exactly when (and only if) it commits,
    so a listener never hears of offsets it cannot read yet.
    """
    topic, partitions, offsets = (f"${first + i}" for i in range(3))
    return f"""advanced AS (
UPDATE checkpoints AS c SET last_offset = a.last_offset, updated_at = now()
FROM unnest({partitions}::integer[], {offsets}::bigint[]) AS a (partition, last_offset)
WHERE c.topic = {topic}::text AND c.partition = a.partition
RETURNING c.partition, c.last_offset)
{announcement(topic, "current_schema()", "advanced")}"""


def _write_inline() -> str:
    # Data-modifying CTEs all run to completion whether or not the main query reads them; they
    # touch different tables, so the order PostgreSQL runs them in does not matter.
    parts = []
    first = 1
    for rows in _ALL_ROWS:
        parts.append(f"wrote_{rows.name} AS ({rows.from_arrays(first)})")
        first += len(rows.columns)
    return "WITH " + ",\n".join(parts) + ",\n" + _advance_and_announce(first)


# Emptied at commit, in place (ON COMMIT DELETE ROWS), so a transaction finds them empty; and
# truncated at the start of a staged write only if an earlier one in the same transaction left
# rows (a rebuild's catch-up applies several batches in one transaction). A TRUNCATE at every
# batch gave each of the five tables a new file and catalog row: ~2 ms of every staged batch
# (docs/performance.md, "Batches (issue 22)", "The read side's live batches"). The second
# TRUNCATE in a transaction is done in place.
_STAGED = [f"pg_temp.{rows.staging_table}" for rows in _ALL_ROWS]
_STAGING = "\n".join(rows.create_staging() for rows in _ALL_ROWS) + (
    "\nDO $$ BEGIN IF "
    + " OR ".join(f"EXISTS (SELECT FROM {table})" for table in _STAGED)
    + " THEN TRUNCATE "
    + ", ".join(_STAGED)
    + "; END IF; END $$;"
)
_WRITE_INLINE = _write_inline()
_FROM_STAGING = tuple(rows.from_staging() for rows in _ALL_ROWS)
_ADVANCE_AND_ANNOUNCE = "WITH " + _advance_and_announce(1)


async def write(
    connection: Any, topic: str, projection: Projection, advanced: Mapping[int, int]
) -> None:
    """Write `projection`'s rows and move the checkpoints of the (locked) partitions to
    `advanced`, announced on commit."""
    batches = (
        projection.movements,
        _account_rows(projection),
        _day_rows(projection),
        _period_rows(projection),
        sorted(tuple(row) for row in projection.transfers.values()),
    )
    partitions = sorted(advanced)
    checkpoints = (topic, partitions, [advanced[p] for p in partitions])
    if sum(len(batch) for batch in batches) <= INLINE_MAX_ROWS:
        arrays = [
            column
            for rows, batch in zip(_ALL_ROWS, batches, strict=True)
            for column in _columns(batch, len(rows.columns))
        ]
        await connection.execute(_WRITE_INLINE, *arrays, *checkpoints)
        return
    await connection.execute(_STAGING)
    inserts = []
    for rows, batch, insert in zip(_ALL_ROWS, batches, _FROM_STAGING, strict=True):
        if batch:
            await connection.copy_records_to_table(
                rows.staging_table, records=batch, columns=rows.names, schema_name="pg_temp"
            )
            inserts.append(insert)
    # One round trip for all of them (a script of statements without parameters).
    if inserts:
        await connection.execute(";\n".join(inserts))
    await connection.execute(_ADVANCE_AND_ANNOUNCE, *checkpoints)


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


def _columns(rows: Sequence[tuple[Any, ...]], width: int) -> list[list[Any]]:
    if not rows:
        return [[] for _ in range(width)]
    return [list(column) for column in zip(*rows, strict=True)]


def _account_rows(projection: Projection) -> list[tuple[Any, ...]]:
    rows = []
    for stored in projection.accounts.values():
        account = stored.account
        rows.append(
            (
                account.account_id,
                account.currency,
                account.owner,
                stored.owner_sealed,
                stored.owner_erased,
                STATUS_TO_DB[account.status],
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


def _period_rows(projection: Projection) -> list[tuple[Any, ...]]:
    """The batch's totals per (width, period, currency, partition), in key order: the same
    order in every batch, so that two transactions never wait for each other's rows in turn."""
    rolled: dict[tuple[str, int, str, int], list[int]] = {}
    for (partition, currency, second), totals in projection.seconds.items():
        for width, seconds in _WIDTHS:
            key = (width, second - second % seconds, currency, partition)
            sums = rolled.get(key)
            if sums is None:
                sums = rolled[key] = [0, 0, 0, 0, 0, 0, 0]
            sums[0] += totals.inflow
            sums[1] += totals.outflow
            sums[2] += totals.movement_count
            sums[3] += totals.opened_count
            sums[4] += totals.closed_count
            sums[5] += totals.transferred_out
            sums[6] += totals.transferred_in
    return [
        (width, start, currency, partition, inflow, outflow, currency_exponent(currency), *rest)
        for (width, start, currency, partition), (inflow, outflow, *rest) in sorted(rolled.items())
    ]
