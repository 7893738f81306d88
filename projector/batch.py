"""One batch of consumed records, applied in one PostgreSQL transaction with its checkpoints.

This is what makes the read side exactly-once (design decision 5): the rows and the offsets they
came from commit together, and the checkpoint rows are locked before anything is read, so a
record at or below its partition's checkpoint was applied before and is skipped, whoever
delivers it again (a restart, a rebalance, a zombie instance, a rebuild catching up).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Any

from projector import read_model
from projector.consumed import ConsumedRecord, DecodedRecord, UndecodableRecord
from projector.projection import project

PublishDeadLetters = Callable[[Sequence[UndecodableRecord]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class BatchResult:
    applied: int
    """Events written to the read model."""
    dead_letters: int
    skipped: int
    """Records at or below their partition's checkpoint: applied by an earlier transaction."""
    checkpoints: dict[int, int]
    """The partitions this batch advanced, with their new last applied offset."""


async def apply_batch(
    connection: Any,
    topic: str,
    records: Sequence[ConsumedRecord],
    publish_dead_letters: PublishDeadLetters | None = None,
) -> BatchResult:
    """Apply `records` (in consumption order) to the read model in one transaction.

    Undecodable records are recorded in `dead_letters` and handed to `publish_dead_letters`,
    which runs last inside the transaction: if publishing fails nothing commits, and a record
    is never marked as dead-lettered without having reached the dead-letter topic.
    Raises projection.Contradiction (and commits nothing) if an event contradicts the model.
    """
    if not records:
        return BatchResult(0, 0, 0, {})
    async with connection.transaction():
        checkpoints = await read_model.lock_checkpoints(
            connection, topic, {record.partition for record in records}
        )
        fresh = [r for r in records if r.offset > checkpoints.get(r.partition, -1)]
        if not fresh:
            return BatchResult(0, 0, len(records), {})
        decoded = [r for r in fresh if isinstance(r, DecodedRecord)]
        undecodable = [r for r in fresh if isinstance(r, UndecodableRecord)]
        if decoded:
            stored = await read_model.load_accounts(
                connection, {record.event.account_id for record in decoded}
            )
            await read_model.write(connection, project(topic, decoded, stored))
        if undecodable:
            await read_model.record_dead_letters(connection, topic, undecodable)
        advanced: dict[int, int] = {}
        for record in fresh:
            advanced[record.partition] = max(record.offset, advanced.get(record.partition, -1))
        await read_model.advance_checkpoints(connection, topic, advanced)
        if undecodable and publish_dead_letters is not None:
            await publish_dead_letters(undecodable)
    return BatchResult(len(decoded), len(undecodable), len(records) - len(fresh), advanced)
