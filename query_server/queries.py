"""The read model's queries (their statements: statements.py), over one asyncpg pool.

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
from typing import Any, TypeVar

from ledger.database_access import DatabaseAccess
from query_server import statements
from query_server.account_reads import CoalescedReads
from query_server.connections import open_pool, translated
from query_server.errors import NotFound
from query_server.page_tokens import Key
from query_server.rows import (
    AccountChanges,
    AccountRow,
    BalanceAtRow,
    BalanceRow,
    CheckpointRow,
    CurrencyTotalsRow,
    MovementRow,
    Movements,
    Page,
    Snapshot,
    SummaryRow,
    TransferRow,
)
from query_server.validation import (
    AccountsQuery,
    BalancesQuery,
    SummariesQuery,
    TransactionsQuery,
)

_T = TypeVar("_T")

_MIN_TIME = datetime.min.replace(tzinfo=UTC)
_MAX_TIME = datetime.max.replace(tzinfo=UTC)
_MAX_VERSION = 2**63 - 1
# Reading a few hundred accounts by key takes milliseconds; the calls of a statement stuck this
# long get UNAVAILABLE (retryable) rather than waiting for the pool's 30 s command timeout.
_ACCOUNT_READ_TIMEOUT_SECONDS = 5.0
_ACCOUNT_FIELDS = len(dataclasses.fields(AccountRow))


class ReadModel:
    """Queries over the read model of one event topic (checkpoints are kept per topic)."""

    def __init__(self, pool: Any, topic: str) -> None:
        self._pool = pool
        self._topic = topic
        # One statement in flight: with more, calls are rarely waiting when one starts, and each
        # costs a statement again (docs/performance.md, "GetAccount: one statement for the calls
        # waiting"). One that is stuck stops counting after a moment (account_reads.py), and
        # fails after _ACCOUNT_READ_TIMEOUT_SECONDS.
        self._accounts = CoalescedReads(self._accounts_by_id, most_statements=pool.get_max_size())

    @classmethod
    async def open(cls, database: DatabaseAccess, topic: str, pool_size: int) -> ReadModel:
        return cls(await open_pool(database, pool_size), topic)

    async def close(self) -> None:
        await self._pool.close()

    async def checkpoints(self) -> dict[int, int]:
        with translated:
            record = await self._pool.fetchrow(statements.CHECKPOINTS, self._topic)
        return dict(_snapshot(tuple(record), 0).checkpoints)

    async def account(self, account_id: str) -> tuple[AccountRow, Snapshot]:
        values = await self._accounts.read(account_id)
        if values[0] is None:
            raise NotFound(_unknown(account_id))
        if values[0] != account_id:
            raise RuntimeError(f"asked for account {account_id!r}, read {values[0]!r}")
        return AccountRow(*values[:_ACCOUNT_FIELDS]), _snapshot(values, _ACCOUNT_FIELDS)

    async def accounts_by_id(
        self, account_ids: Sequence[str]
    ) -> tuple[list[AccountRow | None], Snapshot]:
        """Each account asked for (None for one the read model does not hold), in one statement
        of key lookups, with the snapshot they were read at."""
        rows = await self._accounts_by_id(account_ids)
        found = [None if v[0] is None else AccountRow(*v[:_ACCOUNT_FIELDS]) for v in rows]
        return found, _snapshot(rows[0], _ACCOUNT_FIELDS)

    async def _accounts_by_id(self, account_ids: Sequence[str]) -> list[tuple[Any, ...]]:
        with translated:
            async with self._pool.acquire() as connection:
                try:
                    if len(account_ids) == 1:
                        record = await connection.fetchrow(
                            statements.ACCOUNT,
                            self._topic,
                            account_ids[0],
                            timeout=_ACCOUNT_READ_TIMEOUT_SECONDS,
                        )
                        return [tuple(record)]
                    records = await connection.fetch(
                        statements.ACCOUNTS_BY_ID,
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
        with translated:
            record = await self._pool.fetchrow(statements.BALANCE_AT, self._topic, account_id, at)
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

    async def balances_at(
        self, query: BalancesQuery, within: str | None = None
    ) -> Page[BalanceAtRow]:
        """A page of the accounts that existed at `query.at`, as they were then; only those
        whose id matches `within` (a regular expression) when given.

        Reads at most `page.size` accounts (statements.BALANCES_AT): those opened after `at`
        leave the page short, and the next one continues after the last account read.
        """
        at, page = query.at, query.page
        filters = [value for value in (query.prefix, within) if value is not None]
        sql = statements.BALANCES_AT[(query.prefix is not None, within is not None)]
        after = "" if page.after is None else page.after[0]
        with translated:
            async with (
                self._pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                records = await connection.fetch(sql, after, page.size + 1, at, *filters)
                checkpoints = await connection.fetchrow(statements.CHECKPOINTS, self._topic)
        next_after: Key | None = None
        if len(records) > page.size:
            del records[page.size :]
            next_after = (records[-1][0],)
        rows: list[BalanceAtRow] = [record for record in records if record[-1]]
        return Page(rows, next_after, _snapshot(tuple(checkpoints), 0))

    async def trial_balance(self, at: datetime) -> tuple[list[CurrencyTotalsRow], Snapshot]:
        """Per currency, the ledger's totals up to `at` inclusive (statements.TRIAL_BALANCE)."""
        with translated:
            async with (
                self._pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                records = await connection.fetch(statements.TRIAL_BALANCE, at)
                checkpoints = await connection.fetchrow(statements.CHECKPOINTS, self._topic)
        rows = [CurrencyTotalsRow(*record) for record in records]
        return rows, _snapshot(tuple(checkpoints), 0)

    async def transfer(self, transfer_id: str) -> tuple[TransferRow, Snapshot]:
        with translated:
            record = await self._pool.fetchrow(statements.TRANSFER, self._topic, transfer_id)
        values = tuple(record)
        if values[0] is None:
            raise NotFound(
                f"transfer {transfer_id!r} not found; if it was made just now, pass the "
                "Transfer's consistency_token to wait for the read model to include it"
            )
        return TransferRow(*values[:10]), _snapshot(values, 10)

    async def accounts(self, query: AccountsQuery, within: str | None = None) -> Page[AccountRow]:
        """A page of accounts; only those whose id matches `within` (a regular expression: the
        accounts the caller may see) when given."""
        filters = [value for value in (query.status, query.currency, within) if value is not None]
        sql = statements.ACCOUNTS[
            (query.status is not None, query.currency is not None, within is not None)
        ]
        after = "" if query.page.after is None else query.page.after[0]
        with translated:
            async with (
                self._pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                records = await connection.fetch(sql, after, query.page.size + 1, *filters)
                checkpoints = await connection.fetchrow(statements.CHECKPOINTS, self._topic)
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
        with translated:
            async with (
                self._pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                currency = await connection.fetchval(statements.ACCOUNT_CURRENCY, query.account_id)
                if currency is None:
                    raise NotFound(_unknown(query.account_id))
                records = await connection.fetch(
                    statements.MOVEMENTS_PAGE[(query.descending, bool(query.reference))],
                    query.account_id,
                    after,
                    query.start or _MIN_TIME,
                    query.end or _MAX_TIME,
                    page.size + 1,
                    *((query.reference,) if query.reference else ()),
                )
                checkpoints = await connection.fetchrow(statements.CHECKPOINTS, self._topic)
        rows, next_after = _paged(
            [MovementRow(*record) for record in records], page.size, lambda row: (row.version,)
        )
        return Movements(currency, Page(rows, next_after, _snapshot(tuple(checkpoints), 0)))

    async def daily_summaries(
        self, query: SummariesQuery, within: str | None = None
    ) -> Page[SummaryRow]:
        """A page of summaries; of the whole ledger only those of accounts matching `within` (a
        regular expression) when given."""
        page = query.page
        after_day, after_account = (
            (query.first_day, "")
            if page.after is None
            else (date.fromordinal(int(page.after[0])), page.after[1])
        )
        args = [query.first_day, query.last_day, after_day, after_account, page.size + 1]
        with translated:
            async with (
                self._pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                if query.account_id is None and within is not None:
                    records = await connection.fetch(
                        statements.SUMMARIES_OF_LEDGER_WITHIN, *args, within
                    )
                elif query.account_id is None:
                    records = await connection.fetch(statements.SUMMARIES_OF_LEDGER, *args)
                else:
                    if (
                        await connection.fetchval(statements.ACCOUNT_CURRENCY, query.account_id)
                        is None
                    ):
                        raise NotFound(_unknown(query.account_id))
                    records = await connection.fetch(
                        statements.SUMMARIES_OF_ACCOUNT, *args, query.account_id
                    )
                checkpoints = await connection.fetchrow(statements.CHECKPOINTS, self._topic)
        rows, next_after = _paged(
            [SummaryRow(*record) for record in records],
            page.size,
            lambda row: (row.day.toordinal(), row.account_id),
        )
        return Page(rows, next_after, _snapshot(tuple(checkpoints), 0))

    async def checkpoint_rows(self) -> tuple[list[CheckpointRow], Snapshot]:
        with translated:
            records = await self._pool.fetch(statements.CHECKPOINT_ROWS, self._topic)
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
        with translated:
            async with (
                self._pool.acquire() as connection,
                connection.transaction(isolation="repeatable_read", readonly=True),
            ):
                record = await connection.fetchrow(statements.ACCOUNT_ROW, account_id)
                if record is None:
                    raise NotFound(_unknown(account_id))
                records = await connection.fetch(
                    statements.MOVEMENTS_AFTER, account_id, after_version, limit + 1
                )
                checkpoints = await connection.fetchrow(statements.CHECKPOINTS, self._topic)
        movements = [MovementRow(*movement) for movement in records[:limit]]
        return AccountChanges(
            AccountRow(*record),
            movements,
            complete=len(records) <= limit,
            snapshot=_snapshot(tuple(checkpoints), 0),
        )


def _snapshot(values: Sequence[Any], start: int) -> Snapshot:
    """The Snapshot in `values[start:start + 3]`, the columns of CHECKPOINTS."""
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
