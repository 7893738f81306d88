"""Migration files: found, ordered by version, and refused when ambiguous."""

from __future__ import annotations

import pytest

from projector.migrations import MigrationError, bundled, ordered, quoted_schema


def test_migrations_are_ordered_by_version_not_by_listing() -> None:
    migrations = ordered(
        {
            "0010_tenth.sql": "SELECT 10",
            "0002_second.sql": "SELECT 2",
            "0001_first.sql": "SELECT 1",
        }
    )
    assert [(m.version, m.name, m.sql) for m in migrations] == [
        (1, "0001_first.sql", "SELECT 1"),
        (2, "0002_second.sql", "SELECT 2"),
        (10, "0010_tenth.sql", "SELECT 10"),
    ]


def test_two_files_with_one_version_are_refused() -> None:
    with pytest.raises(MigrationError, match="share version 0003"):
        ordered({"0003_a.sql": "", "0003_b.sql": ""})


@pytest.mark.parametrize("name", ["3_short.sql", "0001-dash.sql", "0001_Upper.sql", "0001_x.SQL"])
def test_misnamed_files_are_refused_rather_than_skipped(name: str) -> None:
    with pytest.raises(MigrationError, match=r"NNNN_description\.sql"):
        ordered({name: ""})


def test_the_shipped_migrations_create_the_read_model_first() -> None:
    migrations = bundled()
    assert migrations[0].name == "0001_read_model.sql"
    assert [m.version for m in migrations] == sorted({m.version for m in migrations})
    for table in ("accounts", "movements", "daily_summaries", "checkpoints", "dead_letters"):
        assert f"CREATE TABLE {table} (" in migrations[0].sql


def test_schema_names_are_plain_identifiers() -> None:
    assert quoted_schema("ledger_rebuild") == '"ledger_rebuild"'
    for bad in ("Ledger", "ledger; DROP", 'le"dger', "", "1ledger"):
        with pytest.raises(ValueError, match="unsupported schema name"):
            quoted_schema(bad)
