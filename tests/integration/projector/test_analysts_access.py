"""Analysts' access on the real stack: the exports read back (pyarrow, DuckDB) equal the ledger
as of their instant, and the stable views are readable by the read-only analyst role, and
survive a rebuild."""

import asyncio
import subprocess
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import duckdb
import pyarrow.parquet as pq
import pytest

from devstack.ledger_services import LedgerService
from devstack.postgres_roles import ANALYST_ROLE, READER_ROLE
from devstack.process import clean_environment
from devstack.stack import LocalStack
from projector import export as export_module
from projector.migrations import bundled, migrate
from tests.integration.projector import model_checks as checks
from tests.integration.projector.as_of import (
    START,
    TimedHistory,
    as_text,
    expected_accounts,
    expected_movements,
    history,
    tie,
)
from tests.integration.projector.event_log import EventLog, unique_id

pytestmark = pytest.mark.integration

VIEWS = (
    "accounts",
    "movements",
    "daily_summaries",
    "monthly_summaries",
    "currency_totals",
    "transfers",
    "money_in_flight",
)


@pytest.fixture
async def projected(
    stack: LocalStack, topic: str, db: Any, projectors: Callable[..., LedgerService]
) -> TimedHistory:
    """The history, written to the topic and projected by a projector that grants reading."""
    made = history(f"an-{unique_id()}")
    log = EventLog(stack, topic, partitions=3)
    log.write(made.events, per_transaction=50)
    projectors(LEDGER_READ_MODEL_READER_ROLE=READER_ROLE).start()
    await checks.caught_up(db, topic, log.last_offsets())
    return made


def analyst_url(stack: LocalStack, database: str) -> str:
    return stack.postgres.role_url(database.rsplit("/", 1)[1], ANALYST_ROLE)


def run_projector(
    stack: LocalStack, database_url: str, password: str | None, *arguments: str, topic: str
) -> subprocess.CompletedProcess[str]:
    env = {**stack.environment(), "LEDGER_TOPIC": topic, "LEDGER_DATABASE_URL": database_url}
    if password is not None:
        env["LEDGER_DATABASE_PASSWORD"] = password
    return subprocess.run(
        [sys.executable, "-m", "projector", *arguments],
        env=clean_environment(env),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def test_exports_read_back_equal_the_ledger_as_of_their_instant(
    stack: LocalStack, topic: str, database: str, db: Any, projected: TimedHistory, tmp_path: Path
) -> None:
    events = projected.events
    at_tie = tie(events)
    instants = {
        "tie": at_tie,
        "before-the-tie": at_tie - timedelta(milliseconds=1),
        "nothing-yet": START,
        "the-end": projected.now + timedelta(days=1),
    }
    password = stack.postgres.role_password(ANALYST_ROLE)
    for name, at in instants.items():
        accounts, movements = expected_accounts(events, at), expected_movements(events, at)
        for export_format in ("parquet", "csv"):
            out = tmp_path / name / export_format
            exported = run_projector(
                stack,
                analyst_url(stack, database),
                password,
                *("export", "--at", at.isoformat(), "--format", export_format),
                *("--out", str(out)),
                topic=topic,
            )
            assert exported.returncode == 0, exported.stderr[-2000:]
            assert f"exporting movements: {len(movements):,}/{len(movements):,}" in exported.stderr
            assert sorted(p.name for p in out.iterdir()) == sorted(
                ["manifest.json"]
                + [f"{name}.{export_format}" for name in ("accounts", "movements", "transfers")]
            )
            if export_format == "parquet":
                assert _parquet_rows(out / "accounts.parquet") == accounts, name
                assert _parquet_rows(out / "movements.parquet") == movements, name
                _check_balances_with_duckdb(out)
            else:
                assert _csv_rows(out / "accounts.csv") == [as_text(r) for r in accounts], name
                assert _csv_rows(out / "movements.csv") == [as_text(r) for r in movements], name
    # The tie is exact: every movement of that millisecond, and nothing after it.
    at_the_tie = expected_movements(events, at_tie)
    assert len(at_the_tie) - len(expected_movements(events, instants["before-the-tie"])) >= 2
    assert not expected_accounts(events, START), "nothing had been opened at the start"

    # And the read model agrees with its own export: the movements as the table holds them.
    table = await db.fetch(
        "SELECT account_id, version, occurred_at, amount, balance_after, event_id::text,"
        " reference, memo FROM ledger.movements WHERE occurred_at <= $1"
        " ORDER BY account_id, version",
        at_tie,
    )
    exported_tie = pq.read_table(tmp_path / "tie" / "parquet" / "movements.parquet").to_pylist()
    columns = (
        *("account_id", "version", "occurred_at", "amount", "balance_after", "event_id"),
        *("reference", "memo"),
    )
    assert [tuple(row) for row in table] == [
        tuple(row[column] for column in columns) for row in exported_tie
    ]


def _parquet_rows(path: Path) -> list[tuple[Any, ...]]:
    return [tuple(row.values()) for row in pq.read_table(path).to_pylist()]


def _csv_rows(path: Path) -> list[tuple[str, ...]]:
    """The CSV as DuckDB reads it when told every column is text (its guess would make money a
    DOUBLE): the decimal strings exactly as written."""
    rows = duckdb.execute(
        f"SELECT * FROM read_csv('{path}', all_varchar = true, header = true)"
    ).fetchall()
    return [tuple("" if value is None else value for value in row) for row in rows]


def _check_balances_with_duckdb(out: Path) -> None:
    """An analyst's query across the two Parquet files: each account's balance is its last
    movement's balance_after (0 without one), and money in minus out is the total held."""
    connection = duckdb.connect()
    mismatched = connection.execute(
        f"""
        SELECT a.account_id FROM '{out}/accounts.parquet' a
        LEFT JOIN (
            SELECT account_id, arg_max(balance_after, version) AS last_balance
            FROM '{out}/movements.parquet' GROUP BY account_id
        ) m USING (account_id)
        WHERE a.balance <> coalesce(m.last_balance, 0)
        """
    ).fetchall()
    assert mismatched == []
    held, moved = connection.execute(
        f"""
        SELECT (SELECT coalesce(sum(balance), 0) FROM '{out}/accounts.parquet'),
               (SELECT coalesce(sum(signed_amount), 0) FROM '{out}/movements.parquet')
        """
    ).fetchone() or (None, None)
    assert held == moved


async def test_a_bad_export_is_refused_clearly(
    stack: LocalStack, topic: str, database: str, db: Any, tmp_path: Path
) -> None:
    """Before the projector has made the views, by a role not granted them, and into a file
    instead of a directory."""
    password = stack.postgres.role_password(ANALYST_ROLE)
    export = ("export", "--at", "2026-03-02T00:00:00Z", "--format", "csv", "--out", str(tmp_path))
    no_views = run_projector(stack, analyst_url(stack, database), password, *export, topic=topic)
    assert no_views.returncode == 2
    assert "has no ledger_analytics views yet: start the projector once" in no_views.stderr
    assert password not in no_views.stderr

    # Migrated by a projector that grants reading to nobody.
    await migrate(db, "ledger", bundled())
    not_granted = run_projector(stack, analyst_url(stack, database), password, *export, topic=topic)
    assert not_granted.returncode == 2
    assert "may not read ledger_analytics: use one the projector grants" in not_granted.stderr
    assert not any(tmp_path.iterdir())  # noqa: ASYNC240 (a test's temp dir, read once)

    a_file = tmp_path / "taken"
    a_file.write_text("")
    not_a_directory = run_projector(
        stack,
        database,
        None,
        *("export", "--at", "2026-03-02T00:00:00Z", "--format", "parquet", "--out", str(a_file)),
        topic=topic,
    )
    assert not_a_directory.returncode == 2
    assert f"--out {a_file} exists and is not a directory" in not_a_directory.stderr


async def test_the_views_are_read_only_for_the_analyst_and_survive_a_rebuild(
    stack: LocalStack, topic: str, database: str, db: Any, projected: TimedHistory
) -> None:
    analyst = await asyncpg.connect(
        analyst_url(stack, database), password=stack.postgres.role_password(ANALYST_ROLE)
    )
    try:
        before = await _views(analyst)
        await _check_views(analyst, db, before)
        oids = await _oids(db)

        # Read-only: its transactions are, and even when it asks otherwise it may not write.
        with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
            await analyst.execute("DELETE FROM ledger.accounts")
        await analyst.execute("SET default_transaction_read_only = off")
        for statement in (
            "DELETE FROM ledger.accounts",
            "CREATE VIEW ledger_analytics.mine AS SELECT 1",
            "CREATE OR REPLACE FUNCTION ledger_analytics.accounts_rows() RETURNS int"
            " LANGUAGE sql AS 'SELECT 1'",
        ):
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await analyst.execute(statement)

        # What an analyst builds on the views (here made for them) survives the rebuild too.
        await db.execute(
            "CREATE SCHEMA analyst_space;"
            "CREATE VIEW analyst_space.rich AS"
            " SELECT account_id FROM ledger_analytics.accounts WHERE balance > 100;"
            f"GRANT USAGE ON SCHEMA analyst_space TO {ANALYST_ROLE};"
            f"GRANT SELECT ON analyst_space.rich TO {ANALYST_ROLE}"
        )
        rich = await analyst.fetch("SELECT * FROM analyst_space.rich ORDER BY 1")
        assert rich

        rebuilt = _rebuild(stack, database, topic)
        assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
        assert not await db.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ledger_old_%'"
        ), "the old model was dropped, and the views did not go with it"
        assert await _oids(db) == oids, "the same views, not new ones"
        assert await _views(analyst) == before
        assert await analyst.fetch("SELECT * FROM analyst_space.rich ORDER BY 1") == rich
        await _check_views(analyst, db, before)
    finally:
        await analyst.close()


def _rebuild(stack: LocalStack, database: str, topic: str) -> subprocess.CompletedProcess[str]:
    # As the projector is run: the shadow grants reading to the reader before the swap.
    env = {**stack.environment(), "LEDGER_READ_MODEL_READER_ROLE": READER_ROLE}
    return subprocess.run(
        [sys.executable, "-m", "projector", "rebuild"],
        env=clean_environment({**env, "LEDGER_TOPIC": topic, "LEDGER_DATABASE_URL": database}),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )


async def _views(connection: Any) -> dict[str, list[Any]]:
    return {
        view: [
            tuple(row)
            for row in await connection.fetch(
                f"SELECT * FROM ledger_analytics.{view} ORDER BY 1, 2"
            )
        ]
        for view in VIEWS
    }


async def _oids(db: Any) -> list[int]:
    return [await db.fetchval(f"SELECT 'ledger_analytics.{view}'::regclass::oid") for view in VIEWS]


async def _check_views(analyst: Any, db: Any, views: dict[str, list[Any]]) -> None:
    """The views say what the tables hold, and add up."""
    accounts = await db.fetch("SELECT account_id, balance, version, status FROM ledger.accounts")
    assert sorted((r[0], r[4], r[5], r[3]) for r in views["accounts"]) == sorted(
        tuple(row) for row in accounts
    )
    assert len(views["movements"]) == await db.fetchval("SELECT count(*) FROM ledger.movements")
    metadata = await db.fetch("SELECT account_id, version, reference, memo FROM ledger.movements")
    assert sorted((r[0], r[1], r[12], r[13]) for r in views["movements"]) == sorted(
        tuple(row) for row in metadata
    )
    assert any(r[12] for r in views["movements"]), "the history gives some movements a reference"
    assert len(views["daily_summaries"]) == await db.fetchval(
        "SELECT count(*) FROM ledger.daily_summaries"
    )
    for currency, count, _, total, inflow, outflow, movements in views["currency_totals"]:
        assert total == inflow - outflow, currency
        assert count == sum(1 for r in views["accounts"] if r[1] == currency)
        assert movements == sum(1 for r in views["movements"] if r[4] == currency)
    # Balances plus money in flight are deposits less withdrawals (all transfers here are
    # same-shard: nothing in flight, each transfer completed).
    held = {currency: total for currency, _, _, total, *_ in views["currency_totals"]}
    for currency, in_flight, _, _, deposited, withdrawn in views["money_in_flight"]:
        assert in_flight == 0, currency
        assert held[currency] + in_flight == deposited - withdrawn, currency
    assert {r[5] for r in views["transfers"]} == {"COMPLETED"}
    assert len(views["transfers"]) == await db.fetchval(
        "SELECT count(*) FROM ledger.movements WHERE kind = 'TRANSFER_OUT'"
    )
    monthly = {(r[0], r[1]): r for r in views["monthly_summaries"]}
    for (account_id, month), row in monthly.items():
        days = [
            r
            for r in views["daily_summaries"]
            if r[0] == account_id and r[1].replace(day=1) == month
        ]
        assert row[3] == sum(d[3] for d in days)
        assert row[4] == sum(d[4] for d in days)
        assert row[7] == max(days, key=lambda d: d[1])[7], "closing balance: the month's last"
    # A filter on a view reaches the table's index: the functions under the views are inlined.
    plan = "\n".join(
        row[0]
        for row in await analyst.fetch(
            "EXPLAIN SELECT * FROM ledger_analytics.movements WHERE account_id = $1", "x"
        )
    )
    assert "Function Scan" not in plan, plan
    assert "Index" in plan, plan


async def test_an_export_across_a_swap_fails_without_holding_the_swap_up(
    database: str, db: Any, projected: TimedHistory, tmp_path: Path, monkeypatch: Any
) -> None:
    """The swap's lock on the live checkpoints is not kept waiting by the export (nor, so, the
    live projector behind it), and the export does not mix the two models."""
    await migrate(db, "ledger_rebuild", bundled())
    written = export_module._write_table
    swapped: list[bool] = []

    async def write_then_swap(*arguments: Any) -> int:
        rows = await written(*arguments)
        if not swapped:
            # What a rebuild's swap does (projector/rebuild.py), between the two files.
            await asyncio.wait_for(
                db.execute(
                    "BEGIN; LOCK TABLE ledger.checkpoints IN ACCESS EXCLUSIVE MODE;"
                    " ALTER SCHEMA ledger RENAME TO ledger_before;"
                    " ALTER SCHEMA ledger_rebuild RENAME TO ledger; COMMIT"
                ),
                timeout=30,
            )
            swapped.append(True)
        return rows

    monkeypatch.setattr(export_module, "_write_table", write_then_swap)
    out = export_module.prepare_directory(tmp_path / "export")
    exporting = await asyncpg.connect(database)
    try:
        with pytest.raises(export_module.ReadModelSwapped, match="export again"):
            await export_module.export(exporting, projected.now, "parquet", out, topic="unused")
    finally:
        await exporting.close()
    assert swapped
    assert not any(out.iterdir())
