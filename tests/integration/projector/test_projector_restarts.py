"""Applying records again, after a restart or a SIGKILL inside a batch, loses and repeats
nothing (docs/design.md, decision 5)."""

from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka.admin import (  # type: ignore[attr-defined, unused-ignore]
    AdminClient,
)

from devstack.ledger_services import LedgerService
from devstack.stack import LocalStack
from projector.batch import apply_batch
from projector.migrations import bundled, migrate
from tests.eventually import eventually_async
from tests.integration.projector import model_checks as checks
from tests.integration.projector.event_log import EventLog, History, records_of

pytestmark = pytest.mark.integration


async def test_applying_the_same_records_again_changes_nothing(
    stack: LocalStack, topic: str, db: Any, projectors: Callable[..., LedgerService]
) -> None:
    log = EventLog(stack, topic, partitions=3)
    log.write(History().generate(accounts=50, events=3000))
    log.write_raw(0, b"junk", b"not avro", [])
    records = records_of(stack, topic, log.codec)
    await migrate(db, "ledger", bundled())

    first = [
        await apply_batch(db, topic, records[i : i + 700]) for i in range(0, len(records), 700)
    ]
    assert sum(r.applied for r in first) == 3000
    assert sum(r.dead_letters for r in first) == 1
    once = await checks.snapshot(db)
    # The same batches again, then differently cut and overlapping ones: all skipped.
    again = [
        await apply_batch(db, topic, records[i : i + 700]) for i in range(0, len(records), 700)
    ]
    overlapping = await apply_batch(db, topic, records[100:2500] + records[1000:])
    assert sum(r.applied + r.dead_letters for r in [*again, overlapping]) == 0
    assert await checks.snapshot(db) == once
    assert await checks.read_model(db) == checks.fold(log.logged)

    # A projector process finds everything applied, also with Kafka's offsets deleted: they are
    # only for lag tools, PostgreSQL's checkpoints say where to resume.
    projector = projectors()
    projector.start()
    await eventually_async(
        checks.assigned(projector, 3), timeout=checks.DEADLINE_S, message="the projector to pick up"
    )
    projector.stop()
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    group = projector.env["LEDGER_PROJECTOR_GROUP"]
    admin.delete_consumer_groups([group], request_timeout=30)[group].result(30)
    projector.start()
    await eventually_async(
        checks.assigned(projector, 3), timeout=checks.DEADLINE_S, message="the projector to pick up"
    )
    assert checks.status(projector)["events_applied"] == 0
    assert await checks.snapshot(db) == once


async def test_sigkill_in_the_middle_of_a_batch_loses_and_repeats_nothing(
    stack: LocalStack,
    topic: str,
    database: str,
    db: Any,
    projectors: Callable[..., LedgerService],
) -> None:
    log = EventLog(stack, topic, partitions=3)
    log.write(History().generate(accounts=600, events=12_000))
    projector = projectors()
    projector.start()

    async def inside_a_batch() -> bool:
        applying = await db.fetchval(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND application_name = 'ledger-projector' AND xact_start IS NOT NULL"
        )
        return bool(applying) and bool(await checks.checkpoints(db, topic))

    await eventually_async(
        inside_a_batch,
        timeout=checks.DEADLINE_S,
        message="the projector to be inside a batch transaction",
    )
    projector.kill()

    # What committed is exactly a prefix of each partition: the log up to its checkpoint.
    done = await checks.checkpoints(db, topic)
    last = log.last_offsets()
    assert any(done.get(p, -1) < offset for p, offset in last.items()), "killed too late"
    assert await checks.read_model(db) == checks.fold(log.logged, upto=done)

    projector.start()
    await checks.caught_up(db, topic, last)
    # Equal sets of (account, version) of movements: none missing, none twice.
    assert await checks.read_model(db) == checks.fold(log.logged)
