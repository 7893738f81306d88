"""Following one account: its state now, then every change in order, as the projector applies it.

A follower sleeps on the shared `Checkpoints` until the checkpoint of its account's partition
moves past what it last read (a NOTIFY wakes it, no polling), then reads its account's changes
after the last version it sent: one indexed read, whatever else happened in the partition.

A process follows at most `Watchers.limit` accounts at once. A slow reader holds little here:
the servicer's `yield` returns only once gRPC has taken the message, which it does only while the
client's HTTP/2 flow-control window has room (docs/reliability.md, "Bounded resources"). A stream
that is not read stops there, holding one message and one batch of changes (`_BATCH` rows).
"""

from __future__ import annotations

import dataclasses
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from ledger.consistency import ConsistencyToken
from query_server.checkpoints import Checkpoints
from query_server.errors import ResourceExhausted
from query_server.queries import ReadModel
from query_server.rows import AccountRow, MovementRow, Snapshot

# Movements read per round trip when a follower has a backlog.
_BATCH = 500


@dataclass(frozen=True, slots=True)
class AccountUpdate:
    account: AccountRow
    """The account right after `movement` (or now, if there is no movement)."""
    movement: MovementRow | None
    """None for the first update and for changes that move no money (closing)."""
    snapshot: Snapshot


class Watchers:
    """Counts the WatchAccount streams of this process against `limit`."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.active = 0

    @contextmanager
    def slot(self) -> Iterator[None]:
        """Held for as long as a stream runs; ResourceExhausted if all `limit` are taken."""
        if self.active >= self.limit:
            raise ResourceExhausted(
                f"this query server already follows {self.active} accounts, its limit "
                "(LEDGER_QUERY_MAX_WATCHES); retry later, or close a WatchAccount stream "
                "you no longer read"
            )
        self.active += 1
        try:
            yield
        finally:
            self.active -= 1


async def follow(
    read_model: ReadModel, checkpoints: Checkpoints, account_id: str
) -> AsyncIterator[AccountUpdate]:
    """The account's current state, then one update per change, ending after it is closed."""
    account, snapshot = await read_model.account(account_id)
    yield AccountUpdate(account, None, snapshot)
    sent = account.version
    while account.status != "CLOSED":
        # Every change to the account moves its partition's checkpoint past what we read.
        applied = snapshot.checkpoints.get(account.partition, -1)
        await checkpoints.wait(ConsistencyToken.at(account.partition, applied + 1))
        complete = False
        while not complete:
            changes = await read_model.account_changes(account_id, sent, _BATCH)
            account, snapshot, complete = changes.account, changes.snapshot, changes.complete
            for movement in changes.movements:
                yield AccountUpdate(_after(account, movement), movement, snapshot)
                sent = movement.version
        # Events that move no money (closing) show only in the account row.
        if account.version > sent:
            yield AccountUpdate(account, None, snapshot)
            sent = account.version


def _after(now: AccountRow, movement: MovementRow) -> AccountRow:
    """The account as it was right after `movement`, given its state `now`."""
    if movement.version == now.version:
        return now
    # Money only moves on open accounts, and currency never changes; the owner shown is the
    # current one (an erased owner stays erased in every earlier state too).
    return dataclasses.replace(
        now,
        status="OPEN",
        balance=movement.balance_after,
        version=movement.version,
        updated_at=movement.occurred_at,
    )
