"""One batch of consumed records, applied in one PostgreSQL transaction with its checkpoints.

This is what makes the read side exactly-once (design decision 5): the rows and the offsets they
came from commit together, and the checkpoint rows are locked before anything is read, so a
record at or below its partition's checkpoint was applied before and is skipped, whoever
delivers it again (a restart, a rebalance, a zombie instance, a rebuild catching up).

A batch may come with a prediction of what it writes, projected before its transaction began
(prediction.py). It is used only if, under the lock, it is exactly what projecting from the
database would give; otherwise the batch loads its accounts and projects as if it had none.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from projector import batch_writes, read_model
from projector.consumed import ConsumedRecord, DecodedRecord, UndecodableRecord
from projector.projection import Projection, StoredAccount, project

if TYPE_CHECKING:
    from projector.prediction import Prediction

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
    locked: Mapping[int, int] = field(default_factory=dict)
    """The checkpoints of the batch's partitions as its transaction found them (-1: none)."""
    accounts: Mapping[str, StoredAccount] = field(default_factory=dict)
    """The accounts the batch wrote, as it left them."""
    predicted: bool = False
    """The batch's prediction held and is what it wrote."""


@dataclass(frozen=True, slots=True)
class Writes:
    """What a batch writes, given the checkpoints its partitions start from."""

    decoded: list[DecodedRecord]
    undecodable: list[UndecodableRecord]
    skipped: int
    advanced: dict[int, int]
    """The last offset of each partition with records above its checkpoint."""
    projection: Projection


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
    prediction: Prediction | None = None,
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
        locked = await read_model.lock_checkpoints(
            connection, topic, {record.partition for record in records}
        )
        writes = None
        if prediction is not None and await prediction.holds(connection, locked):
            writes = prediction.writes
        predicted = writes is not None
        if writes is None:
            decoded, undecodable, advanced = fresh(records, locked)
            if not advanced:
                return BatchResult(0, 0, len(records), {}, locked)
            stored = (
                await read_model.load_accounts(
                    connection, {record.event.account_id for record in decoded}
                )
                if decoded
                else {}
            )
            projection = project(topic, decoded, stored)
            skipped = len(records) - len(decoded) - len(undecodable)
            writes = Writes(decoded, undecodable, skipped, advanced, projection)
        elif not writes.advanced:
            return BatchResult(0, 0, len(records), {}, locked, {}, True)
        if writes.undecodable:
            await read_model.record_dead_letters(connection, topic, writes.undecodable)
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
        predicted,
    )
