"""The projector applying what the real command server writes: rows, notifications, status
and the offsets it commits to Kafka."""

import json
from collections.abc import Callable
from datetime import date
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import grpc
import pytest
from confluent_kafka import Consumer, TopicPartition

from devstack.ledger_services import LedgerService
from devstack.stack import LocalStack
from ledger.command_ids import new_command_id
from ledger.consistency import ConsistencyToken
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc
from tests.eventually import eventually_async
from tests.integration.projector import model_checks as checks
from tests.integration.projector.event_log import unique_id

pytestmark = pytest.mark.integration


async def test_projects_what_the_command_server_writes(
    stack: LocalStack,
    topic: str,
    database: str,
    db: Any,
    tmp_path: Path,
    projectors: Callable[..., LedgerService],
) -> None:
    a, b, y, k = f"a-{unique_id()}", f"b-{unique_id()}", f"y-{unique_id()}", f"k-{unique_id()}"
    commands = LedgerService.command_server(stack, tmp_path, topic=topic)
    commands.start()
    try:
        async with grpc.aio.insecure_channel(commands.address) as channel:
            client = pb_grpc.CommandServiceStub(channel)
            for account, currency in ((a, "EUR"), (b, "EUR"), (y, "JPY"), (k, "KWD")):
                await client.OpenAccount(
                    pb.OpenAccountRequest(
                        command_id=new_command_id(),
                        account_id=account,
                        currency=currency,
                        owner="T",
                    )
                )
            await client.Deposit(
                pb.DepositRequest(command_id=new_command_id(), account_id=a, amount="100.50")
            )
            await client.Withdraw(
                pb.WithdrawRequest(command_id=new_command_id(), account_id=a, amount="0.5")
            )
            transfer_id = new_command_id()
            await client.Transfer(
                pb.TransferRequest(
                    command_id=transfer_id, from_account_id=a, to_account_id=b, amount="100"
                )
            )
            await client.Deposit(
                pb.DepositRequest(command_id=new_command_id(), account_id=y, amount="500")
            )
            await client.Deposit(
                pb.DepositRequest(command_id=new_command_id(), account_id=k, amount="1.005")
            )
            closed = await client.CloseAccount(
                pb.CloseAccountRequest(command_id=new_command_id(), account_id=a)
            )
            last = await client.Withdraw(
                pb.WithdrawRequest(command_id=new_command_id(), account_id=b, amount="40.25")
            )
    finally:
        commands.stop()
    token = ConsistencyToken.decode(closed.consistency_token).merge(
        ConsistencyToken.decode(last.consistency_token)
    )

    listener = await asyncpg.connect(database)
    notified: list[dict[str, Any]] = []
    await listener.add_listener(
        "ledger_checkpoints", lambda *args: notified.append(json.loads(args[-1]))
    )
    projector = projectors()
    projector.start()

    async def token_covered() -> bool:
        heard: dict[int, int] = {}
        for payload in notified:
            for partition, offset in payload["checkpoints"].items():
                heard[int(partition)] = max(offset, heard.get(int(partition), -1))
        return token.covered_by(heard)

    await eventually_async(
        token_covered,
        timeout=checks.DEADLINE_S,
        message="a notification covering the last command's token",
    )
    await listener.close()
    assert {payload["topic"] for payload in notified} == {topic}
    assert token.covered_by(await checks.checkpoints(db, topic))

    accounts = {r["account_id"]: r for r in await db.fetch("SELECT * FROM accounts")}
    assert (accounts[a]["status"], accounts[a]["version"]) == ("CLOSED", 5)
    assert str(accounts[a]["balance"]) == "0.00"
    assert accounts[a]["closed_at"] is not None
    assert (str(accounts[b]["balance"]), accounts[b]["version"]) == ("59.75", 3)
    assert (str(accounts[y]["balance"]), accounts[y]["currency"]) == ("500", "JPY")
    assert str(accounts[k]["balance"]) == "1.005"
    movements = await db.fetch(
        "SELECT kind, amount::text, balance_after::text, counterparty_id, transfer_id"
        " FROM movements WHERE account_id = $1 ORDER BY version",
        a,
    )
    assert [tuple(m) for m in movements] == [
        ("DEPOSIT", "100.50", "100.50", None, None),
        ("WITHDRAWAL", "0.50", "100.00", None, None),
        ("TRANSFER_OUT", "100.00", "0.00", b, transfer_id),
    ]
    incoming = await db.fetchrow(
        "SELECT kind, counterparty_id, transfer_id FROM movements WHERE account_id = $1"
        " AND version = 2",
        b,
    )
    assert tuple(incoming) == ("TRANSFER_IN", a, transfer_id)
    day = await db.fetchrow(
        "SELECT day, inflow::text, outflow::text, movement_count, closing_balance::text"
        " FROM daily_summaries WHERE account_id = $1",
        a,
    )
    # Commands were decided moments ago, so all on one UTC day (unless run at midnight).
    assert tuple(day)[1:] == ("100.50", "100.50", 3, "0.00")
    assert isinstance(day["day"], date)

    await eventually_async(
        checks.assigned(projector, 6),
        timeout=checks.DEADLINE_S,
        message="a lag of 0 on every partition",
    )
    report = checks.status(projector)
    assert (report["events_applied"], report["dead_letters"]) == (12, 0)
    # Kafka's committed offsets follow PostgreSQL's checkpoints, for lag monitoring tools.
    done = await checks.checkpoints(db, topic)
    watcher = Consumer(
        {
            "bootstrap.servers": stack.kafka_bootstrap,
            "group.id": projector.env["LEDGER_PROJECTOR_GROUP"],
        }
    )
    try:

        async def committed_to_kafka() -> bool:
            asked = [TopicPartition(topic, p) for p in done]
            found = {tp.partition: tp.offset for tp in watcher.committed(asked, timeout=10)}
            return found == {p: offset + 1 for p, offset in done.items()}

        await eventually_async(
            committed_to_kafka, timeout=checks.DEADLINE_S, message="offsets committed to Kafka"
        )
    finally:
        watcher.close()
    projector.stop()
    assert projector.wait_exit(5) == 0
    assert "stopped" in projector.log_text()
