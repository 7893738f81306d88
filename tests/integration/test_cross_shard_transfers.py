"""Cross-shard transfers (docs/design.md, decision 13) on the real stack: two command-server
shards, each command sent to its owning shard, and the log read back to count every step."""

from __future__ import annotations

import asyncio
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest

from devstack.ledger_services import LedgerService
from devstack.stack import LocalStack
from ledger.command_ids import new_command_id
from ledger.events.records import TransferCredited, TransferRefunded, TransferSent
from ledger.partitioning import partition_of
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc
from tests.eventually import eventually
from tests.integration.test_command_server import read_events

pytestmark = pytest.mark.integration

PARTITIONS = 4
SHARDS = 2


def shard_of(account_id: str) -> int:
    return partition_of(account_id, PARTITIONS) % SHARDS


def account_on(shard: int) -> str:
    while True:
        account = f"x-{uuid.uuid4().hex[:10]}"
        if shard_of(account) == shard:
            return account


class Shards:
    """Two shards of one ledger, and a client stub per shard."""

    def __init__(self, stack: LocalStack, topic: str, tmp_path: Path) -> None:
        self.services = [
            LedgerService.command_server(
                stack,
                tmp_path / f"shard{i}",
                topic=topic,
                extra_env={
                    "LEDGER_PARTITIONS": str(PARTITIONS),
                    "LEDGER_SHARD_INDEX": str(i),
                    "LEDGER_SHARD_COUNT": str(SHARDS),
                    "LEDGER_TRANSFER_WAIT_SECONDS": "3",
                    # Restarts then start from snapshots holding transfers in flight.
                    "LEDGER_SNAPSHOT_EVERY_EVENTS": "5",
                    "LEDGER_SNAPSHOT_MIN_SECONDS": "0",
                },
            )
            for i in range(SHARDS)
        ]
        self._channels: list[grpc.aio.Channel] = []
        self.stubs: list[pb_grpc.CommandServiceAsyncStub] = []

    def connect(self) -> None:
        self._channels = [s.channel() for s in self.services]
        self.stubs = [pb_grpc.CommandServiceStub(c) for c in self._channels]

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    def of(self, account_id: str) -> pb_grpc.CommandServiceAsyncStub:
        return self.stubs[shard_of(account_id)]

    async def open(self, account_id: str, currency: str = "USD", deposit: str = "") -> None:
        stub = self.of(account_id)
        await stub.OpenAccount(
            pb.OpenAccountRequest(
                command_id=new_command_id(), account_id=account_id, currency=currency, owner="T"
            )
        )
        if deposit:
            await stub.Deposit(
                pb.DepositRequest(
                    command_id=new_command_id(), account_id=account_id, amount=deposit
                )
            )

    async def transfer(
        self, source: str, target: str, amount: str, command_id: str | None = None
    ) -> pb.TransferResponse:
        request = pb.TransferRequest(
            command_id=command_id or new_command_id(),
            from_account_id=source,
            to_account_id=target,
            amount=amount,
        )
        response: pb.TransferResponse = await self.of(source).Transfer(request, timeout=10)
        return response


@pytest.fixture
def topic() -> str:
    return f"saga_{uuid.uuid4().hex[:12]}"


@pytest.fixture
async def shards(stack: LocalStack, topic: str, tmp_path: Path) -> AsyncIterator[Shards]:
    started = Shards(stack, topic, tmp_path)
    for service in started.services:
        service.start()
    started.connect()
    try:
        yield started
    finally:
        await started.close()
        for service in started.services:
            service.stop()


def steps(stack: LocalStack, topic: str) -> Counter[tuple[str, str, str]]:
    """(event type, account, transfer id) -> how many times the log holds it."""
    return Counter(
        (type(e).__name__, e.account_id, e.transfer_id)
        for e in read_events(stack, topic)
        if isinstance(e, TransferSent | TransferCredited | TransferRefunded)
    )


async def test_a_transfer_between_shards_completes_once(
    shards: Shards, stack: LocalStack, topic: str
) -> None:
    source, target = account_on(0), account_on(1)
    await shards.open(source, deposit="100.00")
    await shards.open(target)

    transfer_id = new_command_id()
    answer = await shards.transfer(source, target, "30.00", transfer_id)
    again = await shards.transfer(source, target, "30.00", transfer_id)

    assert answer.status == pb.TRANSFER_STATUS_COMPLETED
    assert (again.status, again.version) == (pb.TRANSFER_STATUS_COMPLETED, answer.version)
    assert steps(stack, topic) == {
        ("TransferSent", source, transfer_id): 1,
        ("TransferCredited", target, transfer_id): 1,
    }


async def test_a_transfer_to_a_closed_account_of_another_shard_is_refunded(
    shards: Shards, stack: LocalStack, topic: str
) -> None:
    source, closed = account_on(1), account_on(0)
    await shards.open(source, deposit="10.00")
    await shards.open(closed)
    await shards.of(closed).CloseAccount(
        pb.CloseAccountRequest(command_id=new_command_id(), account_id=closed)
    )

    transfer_id = new_command_id()
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await shards.transfer(source, closed, "4.00", transfer_id)

    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "closed" in (refused.value.details() or "")
    assert "refunded" in (refused.value.details() or "")
    assert steps(stack, topic) == {
        ("TransferSent", source, transfer_id): 1,
        ("TransferRefunded", source, transfer_id): 1,
    }
    # The whole amount is back: all of it can leave again.
    await shards.of(source).Withdraw(
        pb.WithdrawRequest(command_id=new_command_id(), account_id=source, amount="10.00")
    )


async def _transfer_until_answered(
    shards: Shards, source: str, target: str, command_id: str
) -> pb.TransferResponse:
    """Retry with the same command id while the debiting shard is away (UNAVAILABLE)."""
    while True:
        try:
            return await shards.transfer(source, target, "1.00", command_id)
        except grpc.aio.AioRpcError as exc:
            if exc.code() not in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                raise
            await asyncio.sleep(0.2)


@pytest.mark.parametrize("killed", ["crediting", "debiting"])
async def test_every_transfer_ends_exactly_once_when_a_shard_is_killed_midway(
    shards: Shards, stack: LocalStack, topic: str, killed: str
) -> None:
    sources = [account_on(0) for _ in range(3)]
    target = account_on(1)
    for source in sources:
        await shards.open(source, deposit="100.00")
    await shards.open(target)
    ids = [(source, new_command_id()) for source in sources for _ in range(15)]
    victim = shards.services[1 if killed == "crediting" else 0]
    answers: dict[str, pb.TransferResponse] = {}
    some_answered = asyncio.Event()

    async def send_in_turn(source: str) -> None:
        for s, command_id in ids:
            if s == source:
                answers[command_id] = await _transfer_until_answered(shards, s, target, command_id)
                if len(answers) >= 6:
                    some_answered.set()

    sending = asyncio.gather(*(send_in_turn(s) for s in sources))
    await some_answered.wait()
    await asyncio.to_thread(victim.kill)
    answered_before_kill = len(answers)
    await asyncio.to_thread(victim.start)
    await sending

    assert answered_before_kill < len(ids)
    ended = (pb.TRANSFER_STATUS_COMPLETED, pb.TRANSFER_STATUS_PENDING)
    assert all(a.status in ended for a in answers.values())

    def every_transfer_credited_once() -> Counter[tuple[str, str, str]]:
        found = steps(stack, topic)
        assert found == {
            **{("TransferSent", s, i): 1 for s, i in ids},
            **{("TransferCredited", target, i): 1 for _, i in ids},
        }
        return found

    eventually(every_transfer_credited_once, timeout=60, interval=1.0)
    # Retries after the restart answer from what is recorded, and append nothing.
    for source, command_id in ids:
        retried = await shards.transfer(source, target, "1.00", command_id)
        assert retried.version == answers[command_id].version
        assert retried.status in ended
    every_transfer_credited_once()
