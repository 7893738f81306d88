"""ListTransactions' `reference` filter reads the partial index of migration 0006, also in the
generic plan a prepared statement ends up with: what the literal `reference <> ''` in the page
statement is for (query_server/statements.py)."""

from __future__ import annotations

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from query_server import statements

pytestmark = pytest.mark.integration


async def _generic_plan(connection: asyncpg.Connection, sql: str) -> str:
    """The plan of `sql` for ListTransactions' parameters, generic as after five executions,
    with every other way to read movements out of the planner's reach."""
    async with connection.transaction():
        # Dropped inside the transaction, which is rolled back: only this plan sees them gone.
        await connection.execute(
            "ALTER TABLE movements DROP CONSTRAINT movements_pkey;"
            "DROP INDEX movements_account_time;"
            "SET LOCAL enable_seqscan = off;"
            "SET LOCAL plan_cache_mode = force_generic_plan"
        )
        await connection.execute(f"PREPARE page AS {sql}")
        # Literal values: the generic plan does not look at them.
        rows = await connection.fetch(
            "EXPLAIN EXECUTE page ('a', 0, '1970-01-01Z', '9999-01-01Z', 101, 'ref-1')"
        )
        await connection.execute("DEALLOCATE page")
        plan = "\n".join(row[0] for row in rows)
        raise _RolledBack(plan)


class _RolledBack(Exception):
    def __init__(self, plan: str) -> None:
        super().__init__("rolled back")
        self.plan = plan


async def _plan_of(database_url: str, sql: str) -> str:
    connection = await asyncpg.connect(database_url, server_settings={"search_path": "ledger"})
    try:
        await _generic_plan(connection, sql)
    except _RolledBack as done:
        return done.plan
    finally:
        await connection.close()
    raise AssertionError("unreachable")


@pytest.mark.parametrize("descending", [False, True])
async def test_the_reference_filter_reads_the_partial_index_in_a_generic_plan(
    database_url: str, descending: bool
) -> None:
    sql = statements.MOVEMENTS_PAGE[(descending, True)]
    without_literal = sql.replace("AND reference <> '' ", "")
    assert without_literal != sql

    plan = await _plan_of(database_url, sql)
    unusable = await _plan_of(database_url, without_literal)

    assert "movements_account_reference" in plan, plan
    # Without the literal the planner cannot prove `reference <> ''` for every $6: the partial
    # index is out of reach, and the plan falls back on another way to the rows.
    assert "movements_account_reference" not in unusable, unusable
