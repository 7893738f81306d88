"""Several projector instances, or one supervisor's workers, sharing the partitions."""

import os
import signal
from collections.abc import Callable
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from devstack.ledger_services import LedgerService
from devstack.process import alive, child_pids
from devstack.stack import LocalStack
from projector.batch import apply_batch
from projector.migrations import bundled, migrate
from tests.eventually import eventually_async
from tests.integration.projector import model_checks as checks
from tests.integration.projector.event_log import EventLog, History, records_of

pytestmark = pytest.mark.integration


async def test_two_instances_share_the_partitions_and_build_the_same_model(
    stack: LocalStack,
    topic: str,
    db: Any,
    database: str,
    projectors: Callable[..., LedgerService],
) -> None:
    log = EventLog(stack, topic, partitions=4)
    history = History(seed=3)
    log.write(history.generate(accounts=400, events=4000))
    first, second = projectors("projector-1"), projectors("projector-2")
    first.start()
    second.start()

    await checks.split_between([first, second], partitions=4)
    log.write(history.generate(accounts=10, events=4000, prefix="more"))
    await checks.caught_up(db, topic, log.last_offsets())
    assert await checks.read_model(db) == checks.fold(log.logged)
    both = await checks.snapshot(db)

    # One process applying the whole log alone produces the same tables.
    alone = await asyncpg.connect(database, server_settings={"search_path": "ledger_alone"})
    try:
        await migrate(alone, "ledger_alone", bundled())
        records = records_of(stack, topic, log.codec)
        for start in range(0, len(records), 5000):
            await apply_batch(alone, topic, records[start : start + 5000])
        assert await checks.snapshot(alone, "ledger_alone") == both
    finally:
        await alone.close()


async def test_workers_share_the_partitions_and_stop_together(
    stack: LocalStack,
    topic: str,
    db: Any,
    projectors: Callable[..., LedgerService],
) -> None:
    log = EventLog(stack, topic, partitions=4)
    history = History(seed=5)
    log.write(history.generate(accounts=200, events=2000))
    supervisor = projectors(workers=2)
    host, port = supervisor.address.rsplit(":", 1)
    addresses = [supervisor.address, f"{host}:{int(port) + 1}"]
    supervisor.start()
    assert supervisor.pid is not None
    workers = child_pids(supervisor.pid)
    assert len(workers) == 2

    await checks.split_between(addresses, partitions=4)
    log.write(history.generate(accounts=10, events=2000, prefix="more"))
    await checks.caught_up(db, topic, log.last_offsets())
    assert await checks.read_model(db) == checks.fold(log.logged)

    os.kill(supervisor.pid, signal.SIGTERM)
    assert supervisor.wait_exit(checks.DEADLINE_S) == 0
    assert not alive(workers)
    assert supervisor.log_text().count("stopped with exit code 0") == 2


async def test_workers_stop_when_their_supervisor_dies(
    stack: LocalStack, topic: str, projectors: Callable[..., LedgerService]
) -> None:
    EventLog(stack, topic, partitions=2)
    supervisor = projectors(workers=2)
    supervisor.start()
    assert supervisor.pid is not None
    workers = child_pids(supervisor.pid)
    assert len(workers) == 2

    os.kill(supervisor.pid, signal.SIGKILL)  # the supervisor alone, not its process group
    supervisor.wait_exit(checks.DEADLINE_S)

    async def gone() -> bool:
        return not alive(workers)

    await eventually_async(gone, timeout=checks.DEADLINE_S, message="the orphaned workers to stop")
    assert supervisor.log_text().count("the supervisor is gone") == 2
