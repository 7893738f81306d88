"""One batch of consumed records, applied in one PostgreSQL transaction with its checkpoints.

This is what makes the read side exactly-once (docs/design.md, decision 5): the rows and the
offsets they came from commit together, and the checkpoint rows are locked before anything is
read, so a record at or below its partition's checkpoint was applied before and is skipped,
whoever delivers it again (a restart, a rebalance, a zombie instance, a rebuild catching up).

`apply_batch` is the whole transaction; its steps (`lock_partitions`, then `project_locked` or
`write_locked`) are there for whoever wraps it with a way of working out the writes
differently, inside the same transaction.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from projector import batch_writes, reads
from projector.consumed import ConsumedRecord, DecodedRecord, UndecodableRecord
from projector.projection import Projection, StoredAccount, project

PublishDeadLetters = Callable[[Sequence[UndecodableRecord]], Awaitable[None]]


@dataclass(frozen=True, slots=True)
class Writes:
    """What a batch writes, given the checkpoints its partitions start from."""

    decoded: list[DecodedRecord]
    undecodable: list[UndecodableRecord]
    skipped: int
    advanced: dict[int, int]
    """The last offset of each partition with records above its checkpoint."""
    projection: Projection


@dataclass(frozen=True, slots=True)
class BatchResult:
    applied: int
    """Events written to the read model."""
    dead_letters: int
    skipped: int
    """Records at or below their partition's checkpoint: applied by an earlier transaction."""
    checkpoints: dict[int, int]
    """The partitions this batch advanced, with their new last applied offset."""
    locked: Mapping[int, int] = field(default_factory=dict)
    """The checkpoints of the batch's partitions as its transaction found them (-1: none)."""
    accounts: Mapping[str, StoredAccount] = field(default_factory=dict)
    """The accounts the batch wrote, as it left them."""
    writes: Writes | None = None
    """The very `Writes` the batch wrote (None if it had nothing to write): whoever handed
    some to `write_locked` can tell whether they were used."""


def fresh(
    records: Sequence[ConsumedRecord], checkpoints: Mapping[int, int]
) -> tuple[list[DecodedRecord], list[UndecodableRecord], dict[int, int]]:
    """The records above their partition's checkpoint (decoded, undecodable), and the last
    offset of each partition among them."""
    decoded: list[DecodedRecord] = []
    undecodable: list[UndecodableRecord] = []
    advanced: dict[int, int] = {}
    for record in records:
        partition = record.partition
        offset = record.offset
        if offset <= checkpoints.get(partition, -1):
            continue
        if isinstance(record, DecodedRecord):
            decoded.append(record)
        else:
            undecodable.append(record)
        if offset > advanced.get(partition, -1):
            advanced[partition] = offset
    return decoded, undecodable, advanced


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
        locked = await lock_partitions(connection, topic, records)
        return await project_locked(connection, topic, records, locked, publish_dead_letters)


async def lock_partitions(
    connection: Any, topic: str, records: Sequence[ConsumedRecord]
) -> dict[int, int]:
    """Lock the checkpoints of the records' partitions for the transaction `connection` is in,
    before anything else is read; returns them (-1: none yet)."""
    return await reads.lock_checkpoints(connection, topic, {record.partition for record in records})


async def project_locked(
    connection: Any,
    topic: str,
    records: Sequence[ConsumedRecord],
    locked: Mapping[int, int],
    publish_dead_letters: PublishDeadLetters | None,
) -> BatchResult:
    """Project the records above the `locked` checkpoints from the accounts in the database,
    and write them (`write_locked`)."""
    decoded, undecodable, advanced = fresh(records, locked)
    if not advanced:
        return BatchResult(0, 0, len(records), {}, locked)
    stored = (
        await reads.load_accounts(connection, {record.event.account_id for record in decoded})
        if decoded
        else {}
    )
    projection = project(topic, decoded, stored)
    skipped = len(records) - len(decoded) - len(undecodable)
    writes = Writes(decoded, undecodable, skipped, advanced, projection)
    return await write_locked(connection, topic, writes, locked, publish_dead_letters)


async def write_locked(
    connection: Any,
    topic: str,
    writes: Writes,
    locked: Mapping[int, int],
    publish_dead_letters: PublishDeadLetters | None,
) -> BatchResult:
    """Write `writes`, worked out from the `locked` checkpoints, in the transaction that
    locked them."""
    if not writes.advanced:
        return BatchResult(0, 0, writes.skipped, {}, locked, {}, writes)
    if writes.undecodable:
        await batch_writes.record_dead_letters(connection, topic, writes.undecodable)
    await batch_writes.write(connection, topic, writes.projection, writes.advanced)
    if writes.undecodable and publish_dead_letters is not None:
        await publish_dead_letters(writes.undecodable)
    return BatchResult(
        len(writes.decoded),
        len(writes.undecodable),
        writes.skipped,
        writes.advanced,
        locked,
        writes.projection.accounts,
        writes,
    )
