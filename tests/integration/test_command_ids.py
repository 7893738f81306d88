"""Command ids on the real stack: only UUIDv7s from a sane clock get in, a retry the server has
forgotten is refused rather than applied again (across restarts from snapshots and replays),
and an amount written differently is the same command."""

from __future__ import annotations

import re
import time
import uuid
from pathlib import Path

import grpc
import pytest

from devstack.ledger_services import LedgerService
from devstack.stack import LocalStack
from ledger.command_ids import new_command_id
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc
from tests.integration.test_command_server import read_events

pytestmark = pytest.mark.integration

# Each of the 6 partitions remembers at least its last 2 outcomes and forgets 2 at a time.
FORGETFUL = {"LEDGER_DEDUPE_WINDOW": "12", "LEDGER_DEDUPE_CHUNK_ENTRIES": "2"}
_RESTORED = re.compile(r"restored partitions from snapshots in [0-9.]+s")
_REPLAYED_WHOLE = re.compile(r"rebuilt 1 accounts from (\d+) events")


@pytest.fixture
def topic() -> str:
    return f"account_events_{uuid.uuid4().hex[:12]}"


def deposit(account: str, amount: str, command_id: str | None = None) -> pb.DepositRequest:
    return pb.DepositRequest(
        command_id=command_id or new_command_id(), account_id=account, amount=amount
    )


async def answer(service: LedgerService, request: pb.DepositRequest) -> tuple[int, str]:
    async with grpc.aio.insecure_channel(service.address) as channel:
        reply = await pb_grpc.CommandServiceStub(channel).Deposit(request)
    return reply.version, reply.consistency_token


async def refusal(
    service: LedgerService, request: pb.DepositRequest
) -> tuple[grpc.StatusCode, str]:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await answer(service, request)
    return refused.value.code(), refused.value.details() or ""


async def assert_too_old(service: LedgerService, request: pb.DepositRequest) -> None:
    code, details = await refusal(service, request)
    assert code == grpc.StatusCode.FAILED_PRECONDITION, details
    assert "too old to deduplicate" in details
    assert "ListTransactions" in details


def applied(stack: LocalStack, topic: str, command_id: str) -> int:
    return sum(event.command_id == command_id for event in read_events(stack, topic))


async def test_a_forgotten_retry_is_refused_before_and_after_restarts(
    stack: LocalStack, topic: str, tmp_path: Path
) -> None:
    env = {**FORGETFUL, "LEDGER_SNAPSHOT_EVERY_EVENTS": "1"}
    service = LedgerService.command_server(stack, tmp_path, topic=topic, extra_env=env)
    service.start()
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            await pb_grpc.CommandServiceStub(channel).OpenAccount(
                pb.OpenAccountRequest(command_id=new_command_id(), account_id="acc", currency="EUR")
            )
        original = deposit("acc", "5.00")
        await answer(service, original)
        # Later commands of the same partition push the original out of its window.
        later = [deposit("acc", "1.00") for _ in range(3)]
        answers = [await answer(service, request) for request in later]

        await assert_too_old(service, original)
        assert await answer(service, later[-1]) == answers[-1]

        # A clean stop writes a snapshot; the restart restores it, with the horizon.
        service.stop()
        service.start()
        assert _RESTORED.search(service.log_text()), "no partition was restored from a snapshot"
        assert await answer(service, later[-1]) == answers[-1]
        await assert_too_old(service, original)
    finally:
        service.stop()

    # Without snapshots the whole log is replayed: the same horizon again.
    replaying = LedgerService.command_server(
        stack,
        tmp_path / "replay",
        topic=topic,
        extra_env={**FORGETFUL, "LEDGER_SNAPSHOT_EVERY_EVENTS": "0"},
    )
    replaying.start()
    try:
        assert _REPLAYED_WHOLE.search(replaying.log_text())
        assert await answer(replaying, later[-1]) == answers[-1]
        await assert_too_old(replaying, original)
    finally:
        replaying.stop()
    assert applied(stack, topic, original.command_id) == 1


async def test_only_uuid7_ids_from_a_sane_clock_get_in(
    stack: LocalStack, topic: str, tmp_path: Path
) -> None:
    service = LedgerService.command_server(stack, tmp_path, topic=topic)
    service.start()
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            await pb_grpc.CommandServiceStub(channel).OpenAccount(
                pb.OpenAccountRequest(command_id=new_command_id(), account_id="acc", currency="EUR")
            )
        for command_id in ("cmd-1", str(uuid.uuid4()), new_command_id().upper()):
            code, details = await refusal(service, deposit("acc", "1", command_id))
            assert code == grpc.StatusCode.INVALID_ARGUMENT, details
            assert "is not a UUIDv7" in details
            assert "new_command_id()" in details
        ahead = new_command_id(time.time_ns() // 1_000_000 + 10 * 60_000)
        code, details = await refusal(service, deposit("acc", "1", ahead))
        assert code == grpc.StatusCode.INVALID_ARGUMENT, details
        assert "check the client's clock" in details

        # One amount, written three ways: one command, answered alike.
        command_id = new_command_id()
        first = await answer(service, deposit("acc", "7.5", command_id))
        assert await answer(service, deposit("acc", "7.50", command_id)) == first
        assert await answer(service, deposit("acc", "007.5", command_id)) == first
    finally:
        service.stop()
    events = read_events(stack, topic)
    assert [e.command_id for e in events].count(command_id) == 1
    assert {e.command_id for e in events} & {ahead, "cmd-1"} == set()
    assert len(events) == 2  # the opening and the one deposit
