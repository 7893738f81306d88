"""`python -m projector export --at T --format parquet|csv --out DIR`: the ledger as of T.

Writes `accounts.<format>` (every account opened at or before T, with its status, balance and
version at T), `movements.<format>` (every movement at or before T; all of a millisecond's
movements when T is that millisecond), `transfers.<format>` (every transfer with a step at or
before T, as it stood at T: a cross-shard one PENDING while its money was in flight) and
`manifest.json` (T, the row counts, the checkpoints the read model had applied). Read from the
analysts' views (`ledger_analytics`, migrations 0004 and 0007), so a read-only role can export,
in one read-only REPEATABLE READ transaction: the files are one snapshot (of one read model: an
export across a rebuild's swap fails and says to export again). Rows come through a server-side
cursor, CHUNK_ROWS at a time, so memory stays bounded whatever the ledger's size; progress goes
to stderr.

What an account was at T comes from its last movement at or before T (`balance_after`, and its
version), as GetBalanceAt answers: an account closed at or before T shows CLOSED and its last
version (closing moves no money and is the last event), one without a movement yet 0 and
version 1.
"""

from __future__ import annotations

import asyncio
import json
import logging
import sys
import tempfile
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn, TextIO

import asyncpg
from pyarrow import ArrowException

from ledger.read_model_contract import ANALYTICS_SCHEMA, SCHEMA
from projector.exit_codes import EXIT_CANNOT_START, EXIT_FAILED
from projector.export_formats import ACCOUNTS, MOVEMENTS, TRANSFERS, TableWriter, open_writer
from projector.progress import Progress
from projector.settings import Settings

log = logging.getLogger("projector.export")

CHUNK_ROWS = 10_000
"""Rows fetched from the cursor and written at a time (one Parquet row group each)."""

MANIFEST = "manifest.json"

_VIEWS = ANALYTICS_SCHEMA
_ACCOUNTS_AT = f"""
SELECT a.account_id, a.currency, a.owner,
       CASE WHEN a.closed_at <= $1 THEN 'CLOSED' ELSE 'OPEN' END,
       coalesce(last.balance_after, 0),
       CASE WHEN a.closed_at <= $1 THEN a.version ELSE coalesce(last.version, 1) END,
       a.opened_at,
       CASE WHEN a.closed_at <= $1 THEN a.closed_at END
FROM {_VIEWS}.accounts a
LEFT JOIN LATERAL (
    SELECT m.balance_after, m.version FROM {_VIEWS}.movements m
    WHERE m.account_id = a.account_id AND m.occurred_at <= $1
    ORDER BY m.occurred_at DESC, m.version DESC LIMIT 1
) last ON true
WHERE a.opened_at <= $1
ORDER BY a.account_id
"""
_MOVEMENTS_AT = f"""
SELECT account_id, version, occurred_at, kind, currency, amount, signed_amount, balance_after,
       counterparty_id, transfer_id, command_id, event_id::text, reference, memo
FROM {_VIEWS}.movements WHERE occurred_at <= $1
ORDER BY account_id, version
"""
# Each step counts only if it had happened by T; a transfer whose credit was stamped before
# its send (two shards' clocks) is COMPLETED from the credit on, as GetTransfer says.
_TRANSFER_STEPS = """FROM {views}.transfers
WHERE sent_at <= $1 OR credited_at <= $1 OR refunded_at <= $1"""
_TRANSFERS_AT = f"""
SELECT transfer_id, from_account_id, to_account_id, currency, amount,
       CASE WHEN refunded_at <= $1 THEN 'REFUNDED' WHEN credited_at <= $1 THEN 'COMPLETED'
            ELSE 'PENDING' END,
       CASE WHEN sent_at <= $1 THEN cross_shard::text END,
       CASE WHEN sent_at <= $1 THEN sent_at END,
       CASE WHEN credited_at <= $1 THEN credited_at END,
       CASE WHEN refunded_at <= $1 THEN refunded_at END,
       CASE WHEN refunded_at <= $1 THEN refund_reason END
{_TRANSFER_STEPS.format(views=_VIEWS)}
ORDER BY transfer_id
"""
_COUNTS = {
    ACCOUNTS.name: f"SELECT count(*) FROM {_VIEWS}.accounts WHERE opened_at <= $1",
    MOVEMENTS.name: f"SELECT count(*) FROM {_VIEWS}.movements WHERE occurred_at <= $1",
    TRANSFERS.name: f"SELECT count(*) {_TRANSFER_STEPS.format(views=_VIEWS)}",
}
# The live accounts table, resolved anew: a rebuild's swap replaces it (taking no lock).
_LIVE_MODEL = f"SELECT to_regclass('{SCHEMA}.accounts')::oid"
_CHECKPOINTS = (
    f"SELECT partition, last_offset FROM {SCHEMA}.checkpoints WHERE topic = $1 ORDER BY partition"
)


class ReadModelSwapped(RuntimeError):
    """The live schema was replaced (a rebuild's swap) between two statements of the export."""


class ExportFailed(RuntimeError):
    """The export cannot be done; the message says why and what to do. Files it had begun
    are removed."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def prepare_directory(out: Path) -> Path:
    """`--out`, made if missing; ExportFailed (exit 2) if it is not a directory we can write."""
    try:
        out.mkdir(parents=True, exist_ok=True)
        # The only sure test of writability (permissions, read-only mounts, root's bypass).
        with tempfile.TemporaryFile(dir=out, prefix=".export-probe-"):
            pass
    except FileExistsError:
        raise ExportFailed(
            f"--out {out} exists and is not a directory", EXIT_CANNOT_START
        ) from None
    except OSError as error:
        raise ExportFailed(
            f"cannot write in --out {out}: {error.strerror or error}", EXIT_CANNOT_START
        ) from None
    return out


@dataclass(frozen=True, slots=True)
class ExportReport:
    at: datetime
    export_format: str
    directory: Path
    rows: dict[str, int]
    checkpoints: dict[str, int]


async def export(
    connection: Any,
    at: datetime,
    export_format: str,
    directory: Path,
    *,
    topic: str,
    progress_stream: TextIO | None = None,
) -> ExportReport:
    """Write the accounts, movements and transfers as of `at` into `directory`, then the
    manifest."""
    rows: dict[str, int] = {}
    writers: list[TableWriter] = []
    try:
        async with connection.transaction(isolation="repeatable_read", readonly=True):
            model = await connection.fetchval(_LIVE_MODEL)
            for table, statement in (
                (ACCOUNTS, _ACCOUNTS_AT),
                (MOVEMENTS, _MOVEMENTS_AT),
                (TRANSFERS, _TRANSFERS_AT),
            ):
                total = await connection.fetchval(_COUNTS[table.name], at)
                progress = Progress(f"exporting {table.name}", total, progress_stream)
                writer = open_writer(export_format, table, directory)
                writers.append(writer)
                rows[table.name] = await _write_table(connection, statement, at, writer, progress)
            # Last: reading the checkpoints holds a lock on them until the transaction ends,
            # and a rebuild's swap, which waits for it, would hold up the live projector's
            # batches behind it for as long as the export takes.
            applied = await connection.fetch(_CHECKPOINTS, topic)
            if await connection.fetchval(_LIVE_MODEL) != model:
                raise ReadModelSwapped(
                    "a rebuild swapped a new read model in while the export ran, so its files "
                    "could mix the two: export again"
                )
    except BaseException:
        for writer in writers:
            writer.abandon()
        raise
    for writer in writers:
        writer.publish()
    report = ExportReport(
        at,
        export_format,
        directory,
        rows,
        {str(row["partition"]): row["last_offset"] for row in applied},
    )
    _write_manifest(report, topic)
    return report


async def _write_table(
    connection: Any, statement: str, at: datetime, writer: TableWriter, progress: Progress
) -> int:
    written = 0
    cursor = await connection.cursor(statement, at)
    while rows := await cursor.fetch(CHUNK_ROWS):
        writer.write(rows)
        written += len(rows)
        progress.update(written)
    writer.finish()
    progress.update(written, final=True)
    return written


def _write_manifest(report: ExportReport, topic: str) -> None:
    document = {
        "at": report.at.isoformat(),
        "format": report.export_format,
        "files": {
            name: {"file": f"{name}.{report.export_format}", "rows": count}
            for name, count in report.rows.items()
        },
        "topic": topic,
        "checkpoints": report.checkpoints,
    }
    partial = report.directory / f"{MANIFEST}.partial"
    partial.write_text(json.dumps(document, indent=2) + "\n", encoding="utf-8")
    partial.replace(report.directory / MANIFEST)


async def run_export(settings: Settings, at: datetime, export_format: str, out: Path) -> int:
    """The command: an exit code, with what went wrong logged."""
    try:
        directory = prepare_directory(out)
        connection = await _connect(settings)
        try:
            report = await export(connection, at, export_format, directory, topic=settings.topic)
        except asyncpg.UndefinedTableError:
            raise ExportFailed(
                f"this database has no {ANALYTICS_SCHEMA} views yet: start the projector once "
                "(it applies the migrations), then export",
                EXIT_CANNOT_START,
            ) from None
        except asyncpg.InsufficientPrivilegeError:
            raise ExportFailed(
                f"the role of LEDGER_DATABASE_URL may not read {ANALYTICS_SCHEMA}: use one the "
                "projector grants reading to (LEDGER_READ_MODEL_READER_ROLE) or a member of it",
                EXIT_CANNOT_START,
            ) from None
        # The connection lost or closed, the disk full, a value Arrow refuses, a swap.
        except (
            OSError,
            asyncpg.PostgresError,
            asyncpg.InterfaceError,
            ArrowException,
            ReadModelSwapped,
        ) as error:
            raise ExportFailed(
                f"export stopped, its files removed: {settings.database.scrub(str(error))}"
            ) from None
        finally:
            await connection.close()
    except ExportFailed as error:
        log.critical("export failed: %s", error)
        return error.exit_code
    log.info(
        "exported the ledger as of %s to %s: %s",
        at.isoformat(),
        report.directory,
        ", ".join(f"{count:,} {name}" for name, count in report.rows.items()),
    )
    return 0


async def _connect(settings: Settings) -> Any:
    try:
        return await asyncpg.connect(
            **settings.database.connect_args(),
            server_settings={"application_name": "ledger-projector-export"},
        )
    except (OSError, asyncpg.PostgresError) as error:
        raise ExportFailed(
            f"connecting to PostgreSQL at {settings.database.display_url}: "
            f"{settings.database.scrub(str(error))} (check LEDGER_DATABASE_URL and "
            "LEDGER_DATABASE_PASSWORD)",
            EXIT_CANNOT_START,
        ) from None


def export_and_exit(settings: Settings, at: datetime, export_format: str, out: Path) -> NoReturn:
    sys.exit(asyncio.run(run_export(settings, at, export_format, out)))
