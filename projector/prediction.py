"""Projecting a batch before its transaction begins, while PostgreSQL still applies the one
before it; and what makes it safe to write what was projected.

The projector keeps in memory the accounts as its own commits left them (`AccountView`), each
partition's with the checkpoint they are valid at. The read model's invariant is that the
accounts of a partition are the fold of its events up to its checkpoint, whoever wrote them (this
projector, another instance, a rebuild): so if, under the checkpoint lock, a partition's
checkpoint is the one the view holds, the view's accounts of that partition are the database's.
A batch is projected from the view, and the prediction is used only if every partition of the
batch is at the checkpoint it assumed and every account the view did not hold is absent from
the database; otherwise the batch projects from the database (batch.py). `apply_predicted`
wraps the batch's transaction from outside: batch.py knows nothing of predictions.

The batch before it may still be in flight when a batch is predicted: the prediction then
builds on that batch's own prediction, and is dropped if that one did not hold.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ledger.events.records import AccountOpened
from projector import batch, reads
from projector.batch import BatchResult, PublishDeadLetters, Writes, fresh
from projector.consumed import ConsumedRecord
from projector.projection import StoredAccount, project

log = logging.getLogger(__name__)

VIEW_ACCOUNTS = 200_000
"""How many accounts the view keeps; the least recently written go first (and are then read
from the database again when they next move)."""


@dataclass(frozen=True, slots=True)
class Prediction:
    writes: Writes
    assumed: Mapping[int, int]
    """Partition -> the checkpoint the prediction assumed it is at exactly."""
    below: Mapping[int, int]
    """Partition -> its first record in the batch, for partitions the view knows nothing of:
    assumed to have a checkpoint below it (so every record of it in the batch is fresh)."""
    missing: Collection[str]
    """Accounts the view did not hold, assumed absent from the database."""

    async def holds(self, connection: Any, locked: Mapping[int, int]) -> bool:
        """Whether this is exactly what projecting the batch from the database would give, with
        the batch's checkpoints locked (`locked`) by `connection`'s transaction."""
        for partition, checkpoint in self.assumed.items():
            if locked.get(partition, -1) != checkpoint:
                return False
        for partition, first in self.below.items():
            if locked.get(partition, -1) >= first:
                return False
        return not self.missing or not await reads.any_account(connection, self.missing)

    def used_by(self, result: BatchResult) -> bool:
        """Whether the batch that committed with `result` wrote this prediction."""
        return result.writes is self.writes


async def apply_predicted(
    connection: Any,
    topic: str,
    records: Sequence[ConsumedRecord],
    publish_dead_letters: PublishDeadLetters | None,
    prediction: Prediction | None,
) -> BatchResult:
    """`batch.apply_batch`, writing `prediction` if, under the checkpoint lock, it holds."""
    if prediction is None or not records:
        return await batch.apply_batch(connection, topic, records, publish_dead_letters)
    async with connection.transaction():
        locked = await batch.lock_partitions(connection, topic, records)
        if await prediction.holds(connection, locked):
            return await batch.write_locked(
                connection, topic, prediction.writes, locked, publish_dead_letters
            )
        return await batch.project_locked(connection, topic, records, locked, publish_dead_letters)


class AccountView:
    """The accounts as this projector's commits left them, with each partition's checkpoint.

    Used by the consumer thread only: it predicts, hands batches over and settles their results.
    """

    def __init__(self, limit: int = VIEW_ACCOUNTS) -> None:
        self._limit = limit
        self._checkpoints: dict[int, int] = {}
        self._accounts: dict[str, StoredAccount] = {}
        self._in_flight: Prediction | None = None
        self._unknown_in_flight = False

    def predict(self, topic: str, records: Sequence[ConsumedRecord]) -> Prediction | None:
        """What `records` would write, from the view and the batch in flight; None if that
        cannot be said (the batch in flight has no prediction, or projecting failed: the
        transaction then projects from the database and raises what is wrong there)."""
        if self._unknown_in_flight:
            return None
        before = self._in_flight
        checkpoints: dict[int, int] = dict(self._checkpoints)
        if before is not None:
            checkpoints.update(before.assumed)
            checkpoints.update(before.writes.advanced)
        assumed: dict[int, int] = {}
        below: dict[int, int] = {}
        for record in records:
            partition = record.partition
            if partition in assumed or partition in below:
                continue
            if partition in checkpoints:
                assumed[partition] = checkpoints[partition]
            else:
                below[partition] = record.offset
        decoded, undecodable, advanced = fresh(records, assumed)
        stored: dict[str, StoredAccount] = {}
        missing: set[str] = set()
        earlier = {} if before is None else before.writes.projection.accounts
        for record in decoded:
            account_id = record.event.account_id
            if account_id in stored or account_id in missing:
                continue
            account = earlier.get(account_id) or self._accounts.get(account_id)
            if (
                account is None
                or account.partition != record.partition
                or record.partition in below
            ):
                if not isinstance(record.event, AccountOpened):
                    # Its history starts before this batch, so it exists (or the batch
                    # contradicts the model): the database must be read anyway, and asking
                    # whether it exists would only cost a query.
                    return None
                # Not known as this partition's: if it exists, the database says where.
                missing.add(account_id)
            else:
                stored[account_id] = account
        try:
            projection = project(topic, decoded, stored)
        except Exception as error:
            log.debug("no prediction for a batch: %r", error)
            return None
        skipped = len(records) - len(decoded) - len(undecodable)
        writes = Writes(decoded, undecodable, skipped, advanced, projection)
        return Prediction(writes, assumed, below, missing)

    def sent(self, prediction: Prediction | None) -> None:
        """A batch was handed over for applying, with this prediction."""
        self._in_flight = prediction
        self._unknown_in_flight = prediction is None

    def settle(self, result: BatchResult) -> bool:
        """The batch in flight committed with `result`: take in what it wrote. True if its
        prediction held (so a prediction made on top of it holds too)."""
        prediction = self._in_flight
        self._in_flight = None
        self._unknown_in_flight = False
        if prediction is not None and prediction.used_by(result):
            self._checkpoints.update(prediction.assumed)
            self._checkpoints.update(prediction.writes.advanced)
            self._remember(prediction.writes.projection.accounts)
            return True
        # Projected from the database: what the view held of these partitions may be stale.
        if prediction is not None:
            log.debug("prediction did not hold; checkpoints found: %s", dict(result.locked))
        self.forget(result.locked)
        self._checkpoints.update(result.locked)
        self._checkpoints.update(result.checkpoints)
        self._remember(result.accounts)
        return False

    def forget(self, partitions: Collection[int]) -> None:
        """Drop what the view holds of `partitions` (revoked, or written by someone else)."""
        gone = set(partitions)
        for partition in gone:
            self._checkpoints.pop(partition, None)
        stale = [key for key, account in self._accounts.items() if account.partition in gone]
        for key in stale:
            del self._accounts[key]

    def _remember(self, accounts: Mapping[str, StoredAccount]) -> None:
        held = self._accounts
        for account_id, account in accounts.items():
            # Re-inserted, so that the dict's order is the order of last writes.
            held.pop(account_id, None)
            held[account_id] = account
        while len(held) > self._limit:
            del held[next(iter(held))]
