"""The read model's queries: every SQL statement of the query server, over one asyncpg pool.

Each method returns the data together with the `Snapshot` (projector checkpoints) it was read at,
taken in the same snapshot as the data: a single statement where one suffices (the hot paths),
otherwise a read-only REPEATABLE READ transaction. Connection failures become `Unavailable`.
Accounts asked for while a read of accounts is in flight are read together by the next
statement (account_reads.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Sequence
from datetime import UTC, date, datetime
from decimal import Decimal
from types import TracebackType
from typing import Any, TypeVar

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from query_server.account_reads import CoalescedReads
from query_server.errors import NotFound, Unavailable
from query_server.page_tokens import Key
from query_server.rows import (
    AccountChanges,
    AccountRow,
    BalanceRow,
    CheckpointRow,
    MovementRow,
    Movements,
    Page,
    Snapshot,
    SummaryRow,
)
from query_server.validation import AccountsQuery, SummariesQuery, TransactionsQuery

SCHEMA = "ledger"

_T = TypeVar("_T")

_MIN_TIME = datetime.min.replace(tzinfo=UTC)
_MAX_TIME = datetime.max.replace(tzinfo=UTC)
_MAX_VERSION = 2**63 - 1
# Reading a few hundred accounts by key takes milliseconds; the calls of a statement stuck this
# long get UNAVAILABLE (retryable) rather than waiting for the pool's 30 s command timeout.
_ACCOUNT_READ_TIMEOUT_SECONDS = 5.0


_ACCOUNT_COLUMNS = (
    "account_id, currency, owner, status, balance, version, partition, opened_at, updated_at"
)
_MOVEMENT_COLUMNS = (
    "event_id::text, account_id, version, kind, amount, balance_after, occurred_at, "
    "counterparty_id, transfer_id, command_id"
)
_SUMMARY_COLUMNS = "account_id, day, currency, inflow, outflow, movement_count, closing_balance"
_ACCOUNT_FIELDS = len(dataclasses.fields(AccountRow))

# Aggregated into one row, so that it can share a statement (and so a snapshot) with the data.
_CHECKPOINTS = (
    "SELECT array_agg(partition) AS partitions, array_agg(last_offset) AS offsets, "
    "max(updated_at) AS as_of FROM checkpoints WHERE topic = $1"
)
_ACCOUNTS_WITH_CHECKPOINTS = (
    f"WITH cp AS ({_CHECKPOINTS}) "
    f"SELECT {_ACCOUNT_COLUMNS}, cp.partitions, cp.offsets, cp.as_of FROM cp "
)
# One statement, always one row: the account columns are NULL for an unknown account.
_ACCOUNT = f"{_ACCOUNTS_WITH_CHECKPOINTS}LEFT JOIN accounts ON account_id = $2"
# The same for several accounts: one row per account id asked for, in order. PostgreSQL spends
# about twice as much on it for one id, hence _ACCOUNT for a lone call.
_ACCOUNTS_BY_ID = (
    f"{_ACCOUNTS_WITH_CHECKPOINTS}CROSS JOIN unnest($2::text[]) WITH ORDINALITY AS asked (id, n) "
    "LEFT JOIN accounts ON account_id = asked.id ORDER BY asked.n"
)
_BALANCE_AT = (
    f"WITH cp AS ({_CHECKPOINTS}) "
    "SELECT a.currency, a.opened_at, a.closed_at, a.version, m.balance_after, m.version, "
    "cp.partitions, cp.offsets, cp.as_of "
    "FROM cp LEFT JOIN accounts a ON a.account_id = $2 "
    "LEFT JOIN LATERAL ("
    "  SELECT balance_after, version FROM movements"
    "  WHERE account_id = $2 AND occurred_at <= $3"
    "  ORDER BY occurred_at DESC, version DESC LIMIT 1"
    ") m ON true"
)
_ACCOUNT_CURRENCY = "SELECT currency FROM accounts WHERE account_id = $1"
_ACCOUNT_ROW = f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account_id = $1"
# Keyset pagination; the planner gets a statement per filter combination so that each can use
# its index. '' sorts before every valid account id.
_ACCOUNTS = {
    (status, currency): (
        f"SELECT {_ACCOUNT_COLUMNS} FROM accounts WHERE account_id > $1"
        + (" AND status = $3" if status else "")
        + (f" AND currency = ${3 + status}" if currency else "")
        + " ORDER BY account_id LIMIT $2"
    )
    for status in (False, True)
    for currency in (False, True)
}
_MOVEMENTS_PAGE = {
    descending: (
        f"SELECT {_MOVEMENT_COLUMNS} FROM movements "
        f"WHERE account_id = $1 AND version {'<' if descending else '>'} $2 "
        "AND occurred_at >= $3 AND occurred_at < $4 "
        f"ORDER BY version {'DESC' if descending else 'ASC'} LIMIT $5"
    )
    for descending in (False, True)
}
_MOVEMENTS_AFTER = (
    f"SELECT {_MOVEMENT_COLUMNS} FROM movements "
    "WHERE account_id = $1 AND version > $2 ORDER BY version LIMIT $3"
)
_SUMMARIES_OF_LEDGER = (
    f"SELECT {_SUMMARY_COLUMNS} FROM daily_summaries "
    "WHERE day BETWEEN $1 AND $2 AND (day, account_id) > ($3, $4) "
    "ORDER BY day, account_id LIMIT $5"
)
_SUMMARIES_OF_ACCOUNT = (
    f"SELECT {_SUMMARY_COLUMNS} FROM daily_summaries "
    "WHERE account_id = $6 AND day BETWEEN $1 AND $2 AND (day, account_id) > ($3, $4) "
    "ORDER BY day, account_id LIMIT $5"
)
_CHECKPOINT_ROWS = (
    "SELECT partition, last_offset, updated_at FROM checkpoints WHERE topic = $1 ORDER BY partition"
)

_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    # What asyncpg raises when the server dies under a connection in use.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.InterfaceError,
    # 57xxx: admin/crash shutdown, cannot connect now, statement cancelled.
    asyncpg.OperatorInterventionError,
    # 53xxx: too many connections, out of memory or disk.
    asyncpg.InsufficientResourcesError,
    # When (re)connecting: the database is gone or refuses us.
    asyncpg.InvalidCatalogNameError,
    asyncpg.InvalidAuthorizationSpecificationError,
)
_NOT_INITIALISED_ERRORS = (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError)


class _Translated:
    """Turns the database's failures into Unavailable; a stateless, reusable context manager
    (cheaper per call than a generator-based one)."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, TimeoutError):
            raise Unavailable(
                "the read model did not answer in time; it may be overloaded or a connection "
                "to it broken"
            ) from error
        if isinstance(error, _CONNECTION_ERRORS):
            raise Unavailable(f"the read model cannot be reached: {error}") from error
        if isinstance(error, _NOT_INITIALISED_ERRORS):
            raise Unavailable(
                f"the read model is not initialised yet (has the projector run?): {error}"
            ) from error


_translated = _Translated()


async def _keep_session(connection: object) -> None:
    """Our statements leave no session state behind (no SET, LISTEN, cursors or locks), so the
    pool's default reset, an extra round trip on every release, is skipped."""


class ReadModel:
    """Queries over the read model of one event topic (checkpoints are kept per topic)."""

    def __init__(self, pool: Any, topic: str) -> None:
        self._pool = pool
        self._topic = topic
        # One statement in flight: with more, calls are rarely waiting when one starts, and each
        # costs a statement again (paired runs at 16 and 64 clients: 0.84x and 0.93x with four,
        # 1.11x and 1.32x with one). One that is stuck stops counting after a moment
        # (account_reads.py), and fails after _ACCOUNT_READ_TIMEOUT_SECONDS.
        self._accounts = CoalescedReads(self._accounts_by_id, most_statements=pool.get_max_size())

    @classmethod
    async def open(cls, database_url: str, topic: str, pool_size: int) -> ReadModel:
        with _translated:
            pool = await asyncpg.create_pool(
                database_url,
                min_size=pool_size,
                max_size=pool_size,
                # Connections are only replaced when they break: recycling would cost a
                # reconnect and re-preparing every statement in the middle of the load.
                max_queries=2**62,
                max_inactive_connection_lifetime=0,
                reset=_keep_session,
                server_settings=session_settings(),
                timeout=10,
                command_timeout=30,
            )
        return cls(pool, topic)

    async def close(self) -> None:
        await self._pool.close()

    async def checkpoints(self) -> dict[int, int]:
        with _translated:
            record = await self._pool.fetchrow(_CHECKPOINTS, self._topic)
        return dict(_snapshot(tuple(record), 0).checkpoints)

    async def account(self, account_id: str) -> tuple[AccountRow, Snapshot]:
        values = await self._accounts.read(account_id)
        if values[0] is None:
            raise NotFound(_unknown(account_id))
        if values[0] != account_id:
            raise RuntimeError(f"asked for account {account_id!r}, read {values[0]!r}")
        return AccountRow(*values[:_ACCOUNT_FIELDS]), _snapshot(values, _ACCOUNT_FIELDS)

    async def _accounts_by_id(self, account_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        with _translated:
            async with self._pool.acquire() as connection:
                try:
                    if len(account_ids) == 1:
                        record = await connection.fetchrow(
                            _ACCOUNT,
                            self._topic,
                            account_ids[0],
                            timeout=_ACCOUNT_READ_TIMEOUT_SECONDS,
                        )
                        return [tuple(record)]
                    records = await connection.fetch(
                        _ACCOUNTS_BY_ID,
                        self._topic,
                        account_ids,
                        timeout=_ACCOUNT_READ_TIMEOUT_SECONDS,
                    )
                except TimeoutError:
                    # asyncpg cancels a timed-out statement, and releasing the connection waits
                    # for the server to confirm that on the same connection: on a broken one it
                    # never does, and the release would wait for the 30 s command timeout.
                    connection.terminate()
                    raise
        return [tuple(record) for record in records]

    async def balance_at(self, account_id: str, at: datetime) -> tuple[BalanceRow, Snapshot]:
        with _translated:
            record = await self._pool.fetchrow(_BALANCE_AT, self._topic, account_id, at)
        values = tuple(record)
        currency, opened_at, closed_at, account_version, balance, version = values[:6]
        if currency is None:
            raise NotFound(_unknown(account_id))
        if opened_at > at:
            raise NotFound(
                f"account {account_id!r} did not exist at {at.isoformat()}: it was opened at "
                f"{opened_at.isoformat()}"
            )
        if version is None:
            balance, version = Decimal(0), 1  # opened, nothing moved yet
        if closed_at is not None and closed_at <= at:
            version = account_version  # closing moves no money but is the last event
        return BalanceRow(account_id, currency, balance, version), _snapshot(values, 6)

    async def accounts(self, query: AccountsQuery) -> Page[AccountRow]:
        filters = [value for value in (query.status, query.currency) if value is not None]
        sql = _ACCOUNTS[(query.status is not None, query.currency is not None)]
        after = "" if query.page.after is None else query.page.after[0]
        with _translated:
            async with (
                self._pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                records = await connection.fetch(sql, after, query.page.size + 1, *filters)
                checkpoints = await connection.fetchrow(_CHECKPOINTS, self._topic)
        rows, next_after = _paged(
            [AccountRow(*record) for record in records],
            query.page.size,
            lambda row: (row.account_id,),
        )
        return Page(rows, next_after, _snapshot(tuple(checkpoints), 0))

    async def movements(self, query: TransactionsQuery) -> Movements:
        page = query.page
        first = _MAX_VERSION if query.descending else 0
        after = first if page.after is None else page.after[0]
        with _translated:
            async with (
                self._pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                currency = await connection.fetchval(_ACCOUNT_CURRENCY, query.account_id)
                if currency is None:
                    raise NotFound(_unknown(query.account_id))
                records = await connection.fetch(
                    _MOVEMENTS_PAGE[query.descending],
                    query.account_id,
                    after,
                    query.start or _MIN_TIME,
                    query.end or _MAX_TIME,
                    page.size + 1,
                )
                checkpoints = await connection.fetchrow(_CHECKPOINTS, self._topic)
        rows, next_after = _paged(
            [MovementRow(*record) for record in records], page.size, lambda row: (row.version,)
        )
        return Movements(currency, Page(rows, next_after, _snapshot(tuple(checkpoints), 0)))

    async def daily_summaries(self, query: SummariesQuery) -> Page[SummaryRow]:
        page = query.page
        after_day, after_account = (
            (query.first_day, "")
            if page.after is None
            else (date.fromordinal(int(page.after[0])), page.after[1])
        )
        args = [query.first_day, query.last_day, after_day, after_account, page.size + 1]
        with _translated:
            async with (
                self._pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                if query.account_id is None:
                    records = await connection.fetch(_SUMMARIES_OF_LEDGER, *args)
                else:
                    if await connection.fetchval(_ACCOUNT_CURRENCY, query.account_id) is None:
                        raise NotFound(_unknown(query.account_id))
                    records = await connection.fetch(_SUMMARIES_OF_ACCOUNT, *args, query.account_id)
                checkpoints = await connection.fetchrow(_CHECKPOINTS, self._topic)
        rows, next_after = _paged(
            [SummaryRow(*record) for record in records],
            page.size,
            lambda row: (row.day.toordinal(), row.account_id),
        )
        return Page(rows, next_after, _snapshot(tuple(checkpoints), 0))

    async def checkpoint_rows(self) -> tuple[list[CheckpointRow], Snapshot]:
        with _translated:
            records = await self._pool.fetch(_CHECKPOINT_ROWS, self._topic)
        rows = [CheckpointRow(*record) for record in records]
        snapshot = Snapshot(
            {row.partition: row.last_offset for row in rows},
            max((row.updated_at for row in rows), default=None),
        )
        return rows, snapshot

    async def account_changes(
        self, account_id: str, after_version: int, limit: int
    ) -> AccountChanges:
        """The account now and up to `limit` of its movements after `after_version`."""
        with _translated:
            async with (
                self._pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                record = await connection.fetchrow(_ACCOUNT_ROW, account_id)
                if record is None:
                    raise NotFound(_unknown(account_id))
                records = await connection.fetch(
                    _MOVEMENTS_AFTER, account_id, after_version, limit + 1
                )
                checkpoints = await connection.fetchrow(_CHECKPOINTS, self._topic)
        movements = [MovementRow(*movement) for movement in records[:limit]]
        return AccountChanges(
            AccountRow(*record),
            movements,
            complete=len(records) <= limit,
            snapshot=_snapshot(tuple(checkpoints), 0),
        )


def session_settings() -> dict[str, str]:
    """Settings of every connection of the query server."""
    return {
        "search_path": SCHEMA,
        # A second guard besides our own code: the query server never writes.
        "default_transaction_read_only": "on",
        # Our statements are small indexed reads; JIT compilation would only add latency.
        "jit": "off",
        "application_name": "ledger-query-server",
    }


def _snapshot(values: Sequence[Any], start: int) -> Snapshot:
    """The Snapshot in `values[start:start + 3]`, the columns of _CHECKPOINTS."""
    partitions, offsets, as_of = values[start : start + 3]
    return Snapshot(dict(zip(partitions or (), offsets or (), strict=True)), as_of)


def _paged(rows: list[_T], size: int, key: Callable[[_T], Key]) -> tuple[list[_T], Key | None]:
    """Rows were read with a limit of `size + 1`: one more row means another page follows."""
    if len(rows) <= size:
        return rows, None
    del rows[size:]
    return rows, key(rows[-1])


def _unknown(account_id: str) -> str:
    return (
        f"account {account_id!r} not found; if it was opened just now, pass the command's "
        "consistency_token to wait for the read model to include it"
    )
