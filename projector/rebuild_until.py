"""`python -m projector rebuild --until T --schema NAME`: the whole read model as of the instant
T, built from the log into a schema of its own, verified, and left there.

It replays the log up to its end as the rebuild starts, keeping each account's events up to its
first one after T (an account's events are in time order, so that is its history as of T), and
verifies the schema against an independent fold of the same events. The live projection goes
on meanwhile: nothing here touches the live schema, and nothing is ever swapped in.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from projector.batch import apply_batch
from projector.consumed import ConsumedRecord, DecodedRecord
from projector.log_reader import LogReader
from projector.migrations import Migration, migrate, quoted_schema
from projector.progress import Progress
from projector.rebuild import SHADOW_SCHEMA, RebuildFailed
from projector.verification import Fold, verify

log = logging.getLogger(__name__)

_AS_OF_LOCK = "ledger-rebuild-until"
"""With the schema's name, the advisory lock two rebuilds into one schema would share."""


@dataclass(frozen=True, slots=True)
class AsOfReport:
    records: int
    """Records read from the log."""
    events: int
    """Events applied: those at or before the instant."""
    accounts: int


def refusal(live_schema: str, schema: str, until: datetime) -> str | None:
    """Why a rebuild as of `until` into `schema` must not start; None if it may."""
    if until.tzinfo is None:
        return f"--until {until.isoformat()} has no time zone: add one (Z for UTC)"
    if until > datetime.now(UTC):
        return f"--until {until.isoformat()} is in the future: events up to it may not exist yet"
    try:
        quoted_schema(schema)
    except ValueError as error:
        return f"--schema: {error}"
    if schema in (live_schema, SHADOW_SCHEMA):
        return f"--schema {schema} is the live read model's or the rebuild's: name another one"
    return None


class RebuildUntil:
    def __init__(
        self,
        topic: str,
        schema: str,
        until: datetime,
        migrations: list[Migration],
        reader: LogReader,
        *,
        reader_role: str | None = None,
    ) -> None:
        self._topic = topic
        self._schema = schema
        self._until = until
        self._migrations = migrations
        self._reader = reader
        self._reader_role = reader_role
        self._fold = Fold()
        self._cut: set[str] = set()
        """Accounts that had an event after the instant: their later events are not kept."""

    async def run(self, connection: Any) -> AsOfReport:
        """Build with `connection`, whose search_path must be the schema."""
        locked = await connection.fetchval(
            "SELECT pg_try_advisory_lock(hashtext($1), hashtext($2))", _AS_OF_LOCK, self._schema
        )
        if not locked:
            raise RebuildFailed(f"another rebuild is writing schema {self._schema!r}")
        await self._clear(connection)
        await migrate(connection, self._schema, self._migrations, reader_role=self._reader_role)

        ends = await asyncio.to_thread(self._reader.high_watermarks)
        progress = Progress(
            f"rebuilding {self._topic} as of {self._until.isoformat()}", sum(ends.values())
        )
        await asyncio.to_thread(self._reader.seek, {}, ends)
        records = events = 0
        while (batch := await asyncio.to_thread(self._reader.next_batch)) is not None:
            kept = self._as_of(batch)
            if kept:
                result = await apply_batch(connection, self._topic, kept)
                if result.skipped:
                    raise RebuildFailed(f"{result.skipped} records replayed twice")
                decoded = [r.event for r in kept if isinstance(r, DecodedRecord)]
                self._fold.add(decoded)
                events += len(decoded)
            records += len(batch)
            progress.update(self._reader.position)
        progress.update(self._reader.position, final=True)
        accounts = await verify(connection, self._fold)
        log.info("schema %s verified: %d accounts as of %s", self._schema, accounts, self._until)
        return AsOfReport(records, events, accounts)

    def _as_of(self, batch: Sequence[ConsumedRecord]) -> list[ConsumedRecord]:
        """The records of `batch` that belong to the ledger as of the instant. Undecodable
        ones are kept: the schema lists them as dead letters, as the live one does."""
        kept: list[ConsumedRecord] = []
        until, cut = self._until, self._cut
        for record in batch:
            if isinstance(record, DecodedRecord):
                account_id = record.event.account_id
                if account_id in cut:
                    continue
                if record.event.occurred_at > until:
                    cut.add(account_id)
                    continue
            kept.append(record)
        return kept

    async def _clear(self, connection: Any) -> None:
        """Drop the schema if an earlier rebuild left it; refuse any other existing schema."""
        tables = await connection.fetchval(
            "SELECT count(*) FROM pg_tables WHERE schemaname = $1"
            " AND tablename IN ('schema_migrations', 'checkpoints', 'accounts')",
            self._schema,
        )
        exists = await connection.fetchval(
            "SELECT count(*) FROM pg_namespace WHERE nspname = $1", self._schema
        )
        if exists and tables != 3:
            raise RebuildFailed(
                f"schema {self._schema!r} exists and is not a read model: name another one"
            )
        await connection.execute(f"DROP SCHEMA IF EXISTS {quoted_schema(self._schema)} CASCADE")
