"""Schema migrations: the ordered SQL files in `projector/migrations/`, applied at start.

Files are named `NNNN_description.sql` and applied in version order, each at most once per
schema, with `search_path` set to the target schema (the live `ledger`, or a rebuild's shadow),
so the SQL never names a schema -- but for the analysts' views (0004, 0006), which live in a
schema of their own, `ANALYTICS_SCHEMA`, over the live one. What was applied is recorded in
that schema's `schema_migrations` table.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from importlib.resources import files
from typing import Any

from ledger.read_model_contract import ANALYTICS_SCHEMA

_FILE_NAME = re.compile(r"(?P<version>[0-9]{4})_(?P<name>[a-z0-9_]+)\.sql")
_SCHEMA_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")

MIGRATION_LOCK = 7_132_498_311
"""Advisory lock key held while migrating, so that projectors starting together (and a rebuild)
take turns instead of racing to create the same tables."""


class MigrationError(RuntimeError):
    """The migration files are inconsistent; the message names the files."""


@dataclass(frozen=True, slots=True)
class Migration:
    version: int
    name: str
    sql: str


def ordered(sql_files: Mapping[str, str]) -> list[Migration]:
    """The migrations in `sql_files` (file name -> SQL text) in the order they must be applied.

    Raises MigrationError for a file whose name does not follow the convention (it would
    otherwise be silently skipped) and for two files with the same version.
    """
    by_version: dict[int, Migration] = {}
    for file_name, sql in sql_files.items():
        match = _FILE_NAME.fullmatch(file_name)
        if match is None:
            raise MigrationError(
                f"migration file {file_name!r} is not named NNNN_description.sql "
                "(four digits, then lower-case letters, digits and '_')"
            )
        version = int(match["version"])
        if version in by_version:
            raise MigrationError(
                f"migrations {by_version[version].name!r} and {file_name!r} share version "
                f"{version:04d}"
            )
        by_version[version] = Migration(version, file_name, sql)
    return [by_version[version] for version in sorted(by_version)]


def bundled() -> list[Migration]:
    """The migrations shipped with the projector."""
    directory = files("projector").joinpath("migrations")
    return ordered(
        {
            entry.name: entry.read_text("utf-8")
            for entry in directory.iterdir()
            if entry.name.endswith(".sql")
        }
    )


def quoted_schema(schema: str) -> str:
    """`schema` as an SQL identifier; only plain lower-case names are accepted, so quoting can
    never be needed to make them safe."""
    if _SCHEMA_NAME.fullmatch(schema) is None:
        raise ValueError(f"unsupported schema name {schema!r}: use lower-case letters, digits, _")
    return f'"{schema}"'


async def migrate(
    connection: Any,
    schema: str,
    migrations: Sequence[Migration],
    *,
    reader_role: str | None = None,
) -> list[str]:
    """Create `schema` if needed and apply the migrations it lacks, in one transaction; with
    `reader_role`, let that role read the schema and the analysts' views (`grant_reading`).

    Returns the names of the migrations applied now (empty when the schema was up to date).
    """
    name = quoted_schema(schema)
    async with connection.transaction():
        await connection.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await connection.execute(f"CREATE SCHEMA IF NOT EXISTS {name}")
        await connection.execute(f"SET LOCAL search_path TO {name}")
        await connection.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY,"
            " name text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {
            row["version"]
            for row in await connection.fetch("SELECT version FROM schema_migrations")
        }
        applied = []
        for migration in migrations:
            if migration.version in done:
                continue
            await connection.execute(migration.sql)
            await connection.execute(
                "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)",
                migration.version,
                migration.name,
            )
            applied.append(migration.name)
        if reader_role is not None:
            await grant_reading(connection, schema, reader_role)
            await grant_reading(connection, ANALYTICS_SCHEMA, reader_role)
        return applied


async def grant_reading(connection: Any, schema: str, role: str) -> None:
    """Let `role` read every table of `schema`, those created later by migrations included.

    Granted on every start (it is idempotent), so that a reader role configured after the
    schema was created gets its rights too. Default privileges are those of the role running
    the migrations, which owns the tables: the projector's.
    """
    name = quoted_schema(schema)
    reader = quoted_schema(role)
    await connection.execute(f"GRANT USAGE ON SCHEMA {name} TO {reader}")
    await connection.execute(f"GRANT SELECT ON ALL TABLES IN SCHEMA {name} TO {reader}")
    await connection.execute(
        f"ALTER DEFAULT PRIVILEGES IN SCHEMA {name} GRANT SELECT ON TABLES TO {reader}"
    )
