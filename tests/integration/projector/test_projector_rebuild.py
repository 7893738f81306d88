"""Rebuilding the read model from the log into a shadow schema and swapping it in."""

import json
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from devstack.ledger_services import LedgerService
from devstack.stack import LocalStack
from ledger.domain.commands import Deposit, OpenAccount
from ledger.read_model_contract import NOTIFY_CHANNEL
from projector.feed import consumer_config
from projector.log_reader import LogReader
from projector.migrations import bundled
from projector.rebuild import Rebuild
from tests.eventually import eventually, eventually_async
from tests.integration.projector import model_checks as checks
from tests.integration.projector.event_log import EventLog, History, unique_id

pytestmark = pytest.mark.integration


async def test_rebuild_swaps_in_a_model_identical_to_the_live_one(
    stack: LocalStack,
    topic: str,
    database: str,
    db: Any,
    projectors: Callable[..., LedgerService],
) -> None:
    log = EventLog(stack, topic, partitions=3)
    history = History(seed=7)
    log.write(history.generate(accounts=300, events=6000))
    log.write_raw(1, b"x", b"\x00\x00\x00", [])
    projector = projectors()
    projector.start()
    await checks.caught_up(db, topic, log.last_offsets())

    # Events that arrive after the rebuild took the log's end are only in the live model when
    # the swap begins: the swap must catch up on them under its lock.
    reader = LogReader(
        consumer_config(stack.kafka_bootstrap, f"test-rebuild-{unique_id()}"),
        topic,
        log.codec,
        5000,
    )
    ends_at_start = reader.high_watermarks

    def high_watermarks(timeout: float = 30) -> dict[int, int]:
        ends = ends_at_start(timeout)
        log.write(history.generate(accounts=20, events=500, prefix="late"))
        eventually(
            lambda: checks.applied(checks.status(projector), log.last_offsets()),
            timeout=checks.DEADLINE_S,
            message="the live projector to apply the late events",
        )
        return ends

    reader.high_watermarks = high_watermarks  # type: ignore[method-assign]
    connection = await asyncpg.connect(database, server_settings={"search_path": "ledger_rebuild"})
    heard: list[dict[str, Any]] = []
    listener = await asyncpg.connect(database)
    await listener.add_listener(NOTIFY_CHANNEL, lambda *args: heard.append(json.loads(args[3])))
    try:
        late = log.last_offsets()

        async def run() -> Any:
            return await Rebuild(topic, "ledger", "ledger_rebuild", bundled(), reader).run(
                connection, keep_old=True
            )

        report = await run()
        swapped = {str(p): offset for p, offset in (await checks.checkpoints(db, topic)).items()}

        # The shadow announced its batches under its own name, which readers ignore; the
        # swap announces the checkpoints it brought in as the live schema's.
        async def announced() -> bool:
            return bool(heard) and heard[-1] == {
                "topic": topic,
                "schema": "ledger",
                "checkpoints": swapped,
            }

        await eventually_async(
            announced, timeout=checks.DEADLINE_S, message="the swapped-in checkpoints announced"
        )
        assert any(message["schema"] == "ledger_rebuild" for message in heard)
    finally:
        reader.close()
        await connection.close()
        await listener.close()
    assert report.caught_up > 0
    assert report.old_schema is not None
    assert late != log.last_offsets()
    await checks.caught_up(db, topic, log.last_offsets())
    assert await checks.snapshot(db, "ledger") == await checks.snapshot(db, report.old_schema)
    assert await checks.read_model(db) == checks.fold(log.logged)

    # The live projector carries on in the swapped-in schema.
    log.write(history.decide(OpenAccount(unique_id(), "after-swap", "USD", "S")))
    await checks.caught_up(db, topic, log.last_offsets())
    assert await checks.read_model(db) == checks.fold(log.logged)
    assert not await db.fetchval(
        f"SELECT count(*) FROM {report.old_schema}.accounts WHERE account_id = 'after-swap'"
    )

    # And the command line does the same, dropping the old schema.
    before = await checks.snapshot(db)
    rebuilt = checks.run_rebuild(stack, topic, database)
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    assert "rebuilt ledger" in rebuilt.stderr
    assert await checks.snapshot(db) == before
    assert not await db.fetchval(
        "SELECT count(*) FROM pg_namespace WHERE nspname LIKE 'ledger_old_%' AND nspname <> $1",
        report.old_schema,
    )
    log.write(history.decide(Deposit(unique_id(), "after-swap", "2")))
    await checks.caught_up(db, topic, log.last_offsets())
    assert await checks.read_model(db) == checks.fold(log.logged)
