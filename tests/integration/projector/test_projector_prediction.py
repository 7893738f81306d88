"""Batches projected ahead of their transaction (prediction.py) against real PostgreSQL.

The consumer thread predicts batch k+1 from the accounts as batch k will leave them, before k
has committed; `pipelined` replays that order on one connection. Every test compares the tables
with a model built from the same records without any prediction: a prediction used when it
should not have been shows up there as a wrong balance, version or summary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import pytest

from devstack.stack import LocalStack
from projector import reads as sql
from projector.batch import BatchResult
from projector.consumed import ConsumedRecord, UndecodableRecord
from projector.prediction import AccountView, apply_predicted
from tests.integration.projector import model_checks as checks
from tests.integration.projector.event_log import cut, written_log

pytestmark = pytest.mark.integration

Batches = Sequence[Sequence[ConsumedRecord]]


async def pipelined(
    connection: Any, topic: str, view: AccountView, batches: Batches
) -> tuple[list[BatchResult], list[bool]]:
    """Apply `batches` in order as the feed does: each one predicted while the one before it
    is still in flight (here: before it is applied), predicted again if that one's prediction
    did not hold. Returns the results, and whether each batch's prediction was used."""
    results: list[BatchResult] = []
    predicted: list[bool] = []
    in_flight: tuple[Sequence[ConsumedRecord], Any] | None = None
    for batch in [*batches, None]:
        prediction = None if batch is None else view.predict(topic, batch)
        if in_flight is not None:
            result = await apply_predicted(connection, topic, *in_flight[:1], None, in_flight[1])
            results.append(result)
            predicted.append(view.settle(result))
            if not predicted[-1] and batch is not None:
                prediction = view.predict(topic, batch)
        if batch is not None:
            in_flight = (batch, prediction)
            view.sent(prediction)
    return results, predicted


async def test_predicted_batches_write_exactly_what_projecting_from_the_database_writes(
    stack: LocalStack, topic: str, database: str, db: Any
) -> None:
    log, records = await written_log(stack, topic, db, 5, 4000)

    results, predicted = await pipelined(db, topic, AccountView(), cut(records, 300))

    assert all(predicted)
    assert sum(r.applied for r in results) == len(log.logged)
    assert sum(r.dead_letters for r in results) == 1
    assert await checks.read_model(db) == checks.fold(log.logged)
    # Times are staged as microseconds since the epoch and turned back into timestamptz.
    rows = await db.fetch("SELECT account_id, version, occurred_at FROM movements")
    times = {(e.account_id, e.version): e.occurred_at for e in (item.event for item in log.logged)}
    assert {
        (r["account_id"], r["version"]): r["occurred_at"] for r in rows
    }.items() <= times.items()
    assert await checks.snapshot(db) == await checks.reference(database, topic, records)


async def test_a_checkpoint_another_instance_moved_makes_the_batch_project_from_the_database(
    stack: LocalStack, topic: str, database: str, db: Any
) -> None:
    log, records = await written_log(stack, topic, db, 6, 3000)
    batches = cut(records, 250)
    mine = AccountView()
    await pipelined(db, topic, mine, batches[:4])

    # Another instance (or this one restarted: an empty view) applies the next batches. The
    # accounts exist, so its first prediction (that they do not) cannot hold.
    _, theirs = await pipelined(db, topic, AccountView(), batches[4:7])
    assert theirs == [False, True, True]

    # This instance, a zombie that missed the rebalance, is handed those records again. From
    # its view they follow on, so it predicts them as fresh...
    again = [*batches[4], *batches[5]]
    stale = mine.predict(topic, again)
    assert stale is not None
    assert len(stale.writes.decoded) + len(stale.writes.undecodable) == len(again)
    mine.sent(stale)
    before = await checks.snapshot(db)
    result = await apply_predicted(db, topic, again, None, stale)
    # ...but the checkpoints it assumed moved: the prediction is not used, all is skipped.
    assert (stale.used_by(result), result.applied, result.skipped) == (False, 0, len(again))
    assert await checks.snapshot(db) == before
    assert not mine.settle(result)
    # Its view of those partitions is reset: accounts are read from the database once more.
    _, rest = await pipelined(db, topic, mine, batches[7:])
    assert rest == [False] + [True] * (len(rest) - 1)

    assert await checks.read_model(db) == checks.fold(log.logged)
    assert await checks.snapshot(db) == await checks.reference(database, topic, records)


async def test_a_batch_predicted_on_top_of_a_failed_one_holds_only_once_that_one_commits(
    stack: LocalStack, topic: str, database: str, db: Any
) -> None:
    _, records = await written_log(stack, topic, db, 8, 2000)
    junk = next(i for i, r in enumerate(records) if isinstance(r, UndecodableRecord))
    batches = [records[: junk - 100], records[junk - 100 : junk + 100], records[junk + 100 :]]
    view = AccountView()
    await pipelined(db, topic, view, batches[:1])
    before = await checks.snapshot(db)

    failing = view.predict(topic, batches[1])
    view.sent(failing)
    on_top = view.predict(topic, batches[2])
    assert failing is not None
    assert on_top is not None

    async def unreachable_dead_letter_topic(_: Sequence[UndecodableRecord]) -> None:
        raise ConnectionError("the dead-letter topic is unreachable")

    with pytest.raises(ConnectionError):
        await apply_predicted(db, topic, batches[1], unreachable_dead_letter_topic, failing)
    assert await checks.snapshot(db) == before
    # Under the lock, the batch on top sees the checkpoints before the failed one.
    async with db.transaction():
        locked = await sql.lock_checkpoints(db, topic, {r.partition for r in batches[2]})
        assert not await on_top.holds(db, locked)

    # Retried (as the live projector retries a batch), it commits; then the one on top holds.
    retried = await apply_predicted(db, topic, batches[1], None, failing)
    assert failing.used_by(retried)
    assert view.settle(retried)
    last = await apply_predicted(db, topic, batches[2], None, on_top)
    assert on_top.used_by(last)
    assert await checks.snapshot(db) == await checks.reference(database, topic, records)


async def test_a_batch_applied_again_after_a_lost_commit_is_skipped_and_the_view_resets(
    stack: LocalStack, topic: str, database: str, db: Any
) -> None:
    _, records = await written_log(stack, topic, db, 9, 2000)
    batches = cut(records, 400)
    view = AccountView()
    await pipelined(db, topic, view, batches[:2])

    prediction = view.predict(topic, batches[2])
    view.sent(prediction)
    on_top = view.predict(topic, batches[3])
    committed = await apply_predicted(db, topic, batches[2], None, prediction)
    assert prediction is not None
    assert prediction.used_by(committed)
    # The answer to the commit was lost: the same batch is applied again, found applied.
    again = await apply_predicted(db, topic, batches[2], None, prediction)
    assert (prediction.used_by(again), again.applied, again.skipped) == (False, 0, len(batches[2]))
    assert not view.settle(again)
    # The view forgot those partitions' accounts (it cannot tell who applied the batch): what
    # was predicted on top is dropped, and the next batch reads its accounts from the database.
    assert on_top is not None
    _, rest = await pipelined(db, topic, view, batches[3:])
    assert rest == [False] + [True] * (len(rest) - 1)
    assert await checks.snapshot(db) == await checks.reference(database, topic, records)
