"""A batch's rows go in one statement when it is small and through COPY staging when it is
large: both paths must leave exactly the same tables and announce the same checkpoints.
Against real Kafka (the records) and PostgreSQL."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from devstack.stack import LocalStack
from ledger.read_model_contract import NOTIFY_CHANNEL
from projector import batch_writes
from projector.batch import apply_batch
from tests.eventually import eventually_async
from tests.integration.projector import model_checks as checks
from tests.integration.projector.event_log import cut, written_log

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    "inline_max", [10**9, -1], ids=["every batch in one statement", "every batch staged"]
)
async def test_either_path_writes_the_tables_the_other_does_and_announces_each_commit(
    stack: LocalStack,
    topic: str,
    database: str,
    db: Any,
    monkeypatch: pytest.MonkeyPatch,
    inline_max: int,
) -> None:
    log, records = await written_log(stack, topic, db, 7, 3000)
    heard: list[dict[str, Any]] = []
    listener = await asyncpg.connect(database)
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: heard.append(json.loads(args[3])))
    try:
        with monkeypatch.context() as patched:
            patched.setattr(batch_writes, "INLINE_MAX_ROWS", inline_max)
            # 37 records a batch: some batches hold only the undecodable record, or only
            # openings (no movements), and every kind of event lands in both paths.
            batches = cut(records, 37)
            for batch in batches:
                await apply_batch(db, topic, batch)

        assert await checks.read_model(db) == checks.fold(log.logged)
        final = {str(p): offset for p, offset in (await checks.checkpoints(db, topic)).items()}

        async def announced() -> bool:
            return len(heard) == len(batches) and heard[-1]["checkpoints"] == {
                p: final[p] for p in heard[-1]["checkpoints"]
            }

        await eventually_async(
            announced, timeout=checks.DEADLINE_S, message="every commit announced"
        )
        # The schema the batch went to: a rebuild's shadow announces under its own name.
        assert {(message["topic"], message["schema"]) for message in heard} == {(topic, "ledger")}
        # Each announcement says where its batch left its partitions; together they cover all.
        merged: dict[str, int] = {}
        for message in heard:
            for partition, offset in message["checkpoints"].items():
                assert offset > merged.get(partition, -1)
                merged[partition] = offset
        assert merged == final
        # The reference applies batches of 1,000 records: staged, whatever the test forced.
        assert await checks.snapshot(db) == await checks.reference(database, topic, records)
    finally:
        await listener.close()


async def test_the_default_sends_small_batches_in_one_statement_and_large_ones_staged(
    stack: LocalStack, topic: str, db: Any
) -> None:
    _, records = await written_log(stack, topic, db, 8, 1000)
    statements: list[str] = []
    db.add_query_logger(lambda record: statements.append(record.query))

    await apply_batch(db, topic, records[:10])
    small = list(statements)
    statements.clear()
    await apply_batch(db, topic, records[10:])
    large = list(statements)
    await asyncio.sleep(0)

    assert not any("staged_" in query for query in small)
    assert sum("pg_notify" in query for query in small) == 1
    assert any("TRUNCATE pg_temp.staged_movements" in query for query in large)
    assert sum("pg_notify" in query for query in large) == 1


async def test_staged_batches_sharing_a_transaction_each_write_their_own_rows_only(
    stack: LocalStack, topic: str, db: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The staging tables are emptied at commit and, between two staged batches of one
    transaction (a rebuild's catch-up), at the start of the second: a batch rolled back, or
    one before it in the same transaction, leaves nothing behind for the next."""
    log, records = await written_log(stack, topic, db, 9, 2000)
    monkeypatch.setattr(batch_writes, "INLINE_MAX_ROWS", -1)
    batches = cut(records, 150)
    rolled_back = db.transaction()
    await rolled_back.start()
    await apply_batch(db, topic, batches[0])
    await rolled_back.rollback()
    half = len(batches) // 2
    async with db.transaction():
        for batch in batches[:half]:
            await apply_batch(db, topic, batch)
    for batch in batches[half:]:
        await apply_batch(db, topic, batch)

    assert await checks.read_model(db) == checks.fold(log.logged)
