"""Records the projector cannot apply: undecodable ones go to the dead-letter topic, a
contradicting one stops it (docs/design.md, decision 6)."""

import dataclasses
from collections.abc import Callable
from typing import Any

import pytest
from confluent_kafka import Consumer, Message, TopicPartition

from devstack.ledger_services import LedgerService
from devstack.stack import LocalStack
from ledger.command_ids import new_command_id
from ledger.domain.commands import Deposit, OpenAccount
from ledger.events.records import AccountOpened
from tests.eventually import eventually
from tests.integration.projector import model_checks as checks
from tests.integration.projector.event_log import EventLog, History, unique_id

pytestmark = pytest.mark.integration


async def test_undecodable_records_go_to_the_dead_letter_topic(
    stack: LocalStack, topic: str, db: Any, projectors: Callable[..., LedgerService]
) -> None:
    log = EventLog(stack, topic, partitions=1)
    history = History()
    log.write(history.decide(OpenAccount(unique_id(), "poisoned", "USD", "P")))
    garbage = log.write_raw(0, b"poisoned", b"\xff garbage", [("trace", b"t-1")])
    unknown_schema = log.write_raw(0, b"poisoned", b"\x00\x7f\xff\xff\xf0" + b"\x02" * 20, [])
    log.write(history.decide(Deposit(unique_id(), "poisoned", "7.25")))
    projector = projectors()
    projector.start()
    await checks.caught_up(db, topic, log.last_offsets())

    account = await db.fetchrow("SELECT balance::text, version FROM accounts")
    assert tuple(account) == ("7.25", 2)
    letters = await db.fetch('SELECT "offset", error FROM dead_letters ORDER BY "offset"')
    assert [row["offset"] for row in letters] == [garbage, unknown_schema]
    assert "magic byte" in letters[0]["error"]
    assert "schema id" in letters[1]["error"]
    assert checks.status(projector)["dead_letters"] == 2

    consumer = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": f"test-{unique_id()}",
            "auto.offset.reset": "earliest",
        }
    )
    try:
        consumer.assign([TopicPartition(f"{topic}.dlq", 0, 0)])
        dead: list[Message] = []

        def both_dead_letters_read() -> bool:
            message = consumer.poll(0.5)
            if message is not None and message.error() is None:
                dead.append(message)
            return len(dead) >= 2

        eventually(
            both_dead_letters_read,
            timeout=checks.DEADLINE_S,
            interval=0,
            message=lambda: f"two records on the dead-letter topic, read {len(dead)}",
        )
    finally:
        consumer.close()
    assert [(m.key(), m.value()) for m in dead] == [
        (b"poisoned", b"\xff garbage"),
        (b"poisoned", b"\x00\x7f\xff\xff\xf0" + b"\x02" * 20),
    ]
    headers = [dict(m.headers() or []) for m in dead]
    assert headers[0]["trace"] == b"t-1"
    for message_headers, offset in zip(headers, (garbage, unknown_schema), strict=True):
        assert message_headers["original_topic"] == topic.encode()
        assert message_headers["original_partition"] == b"0"
        assert message_headers["original_offset"] == str(offset).encode()
        assert message_headers["error"]


# With two workers, the one that owns the partition meets the event, and its exit code ends the
# supervisor and the other worker.
@pytest.mark.parametrize("workers", [1, 2])
async def test_a_contradicting_event_stops_the_projector_and_applies_nothing_of_its_batch(
    stack: LocalStack,
    topic: str,
    database: str,
    db: Any,
    projectors: Callable[..., LedgerService],
    workers: int,
) -> None:
    log = EventLog(stack, topic, partitions=1)
    history = History()
    log.write(history.decide(OpenAccount(unique_id(), "gappy", "EUR", "G")))
    log.write(history.decide(Deposit(unique_id(), "gappy", "1")))
    projector = projectors(workers=workers)
    projector.start()
    await checks.caught_up(db, topic, log.last_offsets())
    before = await checks.snapshot(db)

    valid = history.decide(Deposit(unique_id(), "gappy", "2"))
    history.decide(Deposit(unique_id(), "gappy", "3"))  # version 4 never reaches the log
    gap = history.decide(Deposit(unique_id(), "gappy", "4"))
    written = log.write(valid + gap)
    assert projector.wait_exit(checks.DEADLINE_S) == 3
    text = projector.log_text()
    if workers == 2:
        # The other worker may meet the event too, once the partition moves to it.
        assert "exited with exit code 3; stopping all workers" in text, text[-2000:]
    assert (
        f"event at topic {topic!r} partition 0 offset {written[1].offset} (account 'gappy', "
        "event version 5) contradicts the read model, where the account is at version 3"
    ) in text, text[-2000:]
    # Version 3 came in the same batch as the gap, so it was not applied either.
    assert await checks.snapshot(db) == before

    rebuilt = checks.run_rebuild(stack, topic, database)
    assert rebuilt.returncode == 4, rebuilt.stderr[-2000:]
    assert "rebuild failed, the live read model is untouched" in rebuilt.stderr
    assert await checks.snapshot(db) == before


async def test_an_event_the_read_model_cannot_store_stops_the_projector_once(
    stack: LocalStack, topic: str, db: Any, projectors: Callable[..., LedgerService]
) -> None:
    # As a buggy or old writer would: past the command server, which refuses a NUL in an owner.
    log = EventLog(stack, topic, partitions=1)
    history = History()
    log.write(history.decide(OpenAccount(new_command_id(), "clean", "USD", "C")))
    log.write(history.decide(Deposit(new_command_id(), "clean", "5")))
    projector = projectors()
    projector.start()
    await checks.caught_up(db, topic, log.last_offsets())
    before = await checks.snapshot(db)

    (opened,) = history.decide(OpenAccount(new_command_id(), "nul-owner", "USD", "N"))
    assert isinstance(opened, AccountOpened)
    written = log.write([dataclasses.replace(opened, owner="Ada\x00Lovelace")])
    assert projector.wait_exit(checks.DEADLINE_S) == 3
    text = projector.log_text()
    assert (
        f"event at topic {topic!r} partition 0 offset {written[0].offset} (account 'nul-owner', "
        "event version 1) cannot be stored in the read model: owner 'Ada"
    ) in text, text[-2000:]
    assert "Lovelace' contains NUL, which PostgreSQL text cannot hold" in text
    assert text.count("cannot be stored in the read model") == 1  # stopped, not restarted
    assert "ledger.checkpoints" in text  # what the operator can do
    assert await checks.snapshot(db) == before
