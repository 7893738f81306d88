"""`python -m projector rebuild`: replay the whole log into a shadow schema, verify, swap it in.

Readers never see a half-built model: the shadow is built next to the live schema, verified
against an independent fold of the events, and swapped in by renaming both schemas in one
transaction. That transaction first locks the live `checkpoints` table, which the live projector
touches first in every batch transaction: while it is locked no batch can commit, the shadow
catches up to the live checkpoints and is verified again. When it commits, the waiting batch
statement resolves `checkpoints` by name again, finds the swapped-in table, sees offsets at least
as far as its own and carries on there (see batch.py).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from projector.batch import apply_batch
from projector.batch_writes import announcement
from projector.consumed import DecodedRecord
from projector.log_reader import LogReader
from projector.migrations import Migration, migrate, quoted_schema
from projector.progress import Progress
from projector.reads import read_checkpoints
from projector.verification import Fold, verify

log = logging.getLogger(__name__)

SHADOW_SCHEMA = "ledger_rebuild"
"""Where a rebuild builds the model it swaps in."""

REBUILD_LOCK = 7_132_498_312
"""Session advisory lock held for a whole rebuild: two rebuilds must not share a shadow."""


class RebuildFailed(RuntimeError):
    """The rebuild could not complete; the live read model is untouched."""


@dataclass(frozen=True, slots=True)
class RebuildReport:
    records: int
    accounts: int
    caught_up: int
    """Records replayed under the swap lock because the live projector had moved on."""
    old_schema: str | None
    """Where the replaced model was kept (with --keep-old), else None: it was dropped."""


class Rebuild:
    def __init__(
        self,
        topic: str,
        live_schema: str,
        shadow_schema: str,
        migrations: list[Migration],
        reader: LogReader,
        *,
        reader_role: str | None = None,
    ) -> None:
        self._topic = topic
        self._live = live_schema
        self._shadow = shadow_schema
        self._migrations = migrations
        self._reader = reader
        self._reader_role = reader_role
        self._fold = Fold()

    async def run(self, connection: Any, *, keep_old: bool) -> RebuildReport:
        """Rebuild with `connection`, whose search_path must be the shadow schema."""
        if not await connection.fetchval("SELECT pg_try_advisory_lock($1)", REBUILD_LOCK):
            raise RebuildFailed("another rebuild is running against this database")
        role = self._reader_role
        await migrate(connection, self._live, self._migrations, reader_role=role)
        await connection.execute(f"DROP SCHEMA IF EXISTS {quoted_schema(self._shadow)} CASCADE")
        # The shadow gets the reader's grants now: they are the schema's and its tables', so
        # they go with it through the renames of the swap.
        await migrate(connection, self._shadow, self._migrations, reader_role=role)

        ends = await asyncio.to_thread(self._reader.high_watermarks)
        progress = Progress(f"rebuilding {self._topic}", sum(ends.values()))
        records = await self._replay(connection, {}, ends, progress)
        accounts = await verify(connection, self._fold)
        log.info("shadow schema %s verified: %d accounts", self._shadow, accounts)

        old_schema = f"{self._live}_old_{datetime.now(UTC):%Y%m%d%H%M%S}"
        caught_up = await self._swap(connection, old_schema)
        log.info("swapped the rebuilt read model in (the old one is now %s)", old_schema)
        if not keep_old:
            await connection.execute(f"DROP SCHEMA {quoted_schema(old_schema)} CASCADE")
        return RebuildReport(
            records + caught_up,
            len(self._fold.accounts),
            caught_up,
            old_schema if keep_old else None,
        )

    async def _replay(
        self,
        connection: Any,
        starts: Mapping[int, int],
        ends: Mapping[int, int],
        progress: Progress | None,
    ) -> int:
        """Apply the records from `starts` (default 0) up to `ends` to the shadow and the fold."""
        await asyncio.to_thread(self._reader.seek, starts, ends)
        begin = self._reader.position
        count = 0
        while (records := await asyncio.to_thread(self._reader.next_batch)) is not None:
            # Dead letters were published by the live projector when it met these records.
            result = await apply_batch(connection, self._topic, records)
            if result.skipped:
                raise RebuildFailed(f"{result.skipped} records replayed twice into the shadow")
            self._fold.add(r.event for r in records if isinstance(r, DecodedRecord))
            count += len(records)
            if progress is not None:
                progress.update(self._reader.position - begin)
        if progress is not None:
            progress.update(self._reader.position - begin, final=True)
        return count

    async def _swap(self, connection: Any, old_schema: str) -> int:
        live = quoted_schema(self._live)
        async with connection.transaction():
            # Waits for the live projector's batch in flight; blocks its next one until we commit.
            await connection.execute(f"LOCK TABLE {live}.checkpoints IN ACCESS EXCLUSIVE MODE")
            rows = await connection.fetch(
                f"SELECT partition, last_offset FROM {live}.checkpoints"
                " WHERE topic = $1 AND last_offset >= 0",
                self._topic,
            )
            live_checkpoints = {row["partition"]: row["last_offset"] for row in rows}
            shadow_checkpoints = await read_checkpoints(connection, self._topic)
            behind = {
                p: offset
                for p, offset in live_checkpoints.items()
                if offset > shadow_checkpoints.get(p, -1)
            }
            caught_up = 0
            if behind:
                starts = {p: shadow_checkpoints.get(p, -1) + 1 for p in behind}
                ends = {p: offset + 1 for p, offset in behind.items()}
                log.info("catching up with the live projector: %s -> %s", starts, ends)
                caught_up = await self._replay(connection, starts, ends, None)
                await verify(connection, self._fold)
            await connection.execute(f"ALTER SCHEMA {live} RENAME TO {quoted_schema(old_schema)}")
            await connection.execute(f"ALTER SCHEMA {quoted_schema(self._shadow)} RENAME TO {live}")
            # The shadow's batches announced themselves under its own name, which readers
            # ignore, and the live projector will skip what the shadow already holds without
            # announcing anything: announce the swapped-in checkpoints as the live schema's.
            applied = f"{live}.checkpoints WHERE topic = $1 AND last_offset >= 0"
            await connection.execute(
                announcement("$1", "$2::text", applied), self._topic, self._live
            )
        return caught_up
