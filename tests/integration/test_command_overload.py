"""The command server while Kafka is gone (issue 20): its command queue is bounded, so commands
past the bound (and batches that do not fit: issue 22) are refused at once with
RESOURCE_EXHAUSTED and a retry hint, its memory stays flat however many come, and writes resume
once the broker is back."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from devstack import LocalStack, StackPorts
from devstack.ledger_services import LedgerService
from ledger.command_ids import new_command_id
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc
from tests.eventually import eventually_async

pytestmark = pytest.mark.integration

QUEUE_MAX = 20
RETRY_AFTER_MS = 500
# Commands sent while the queue is full, in waves of WAVE calls at once.
FLOOD = 10_000
WAVE = 250
# Far above what the queue and the calls in flight hold, far below what FLOOD calls held would.
RSS_GROWTH_BOUND = 40 * 1024 * 1024


@pytest.fixture(scope="module")
def own_stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """A stack of this module's own: its broker is stopped, which no other test may see."""
    with LocalStack(tmp_path_factory.mktemp("overload-stack"), StackPorts.free()) as started:
        yield started


def _deposit(account: str) -> pb.DepositRequest:
    return pb.DepositRequest(command_id=new_command_id(), account_id=account, amount="1")


async def _answer(call: asyncio.Future[pb.DepositResponse]) -> grpc.aio.AioRpcError | None:
    try:
        await call
    except grpc.aio.AioRpcError as refusal:
        return refusal
    return None


def _rss_bytes(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise AssertionError(f"no VmRSS for process {pid}")


async def test_a_full_queue_refuses_at_once_with_a_retry_hint_and_memory_stays_flat(
    own_stack: LocalStack, tmp_path: Path
) -> None:
    service = LedgerService.command_server(
        own_stack,
        tmp_path,
        topic=f"overload_{new_command_id()[:8]}",
        extra_env={
            "LEDGER_BATCH_MAX_COMMANDS": "10",
            "LEDGER_COMMAND_QUEUE_MAX": str(QUEUE_MAX),
            "LEDGER_COMMAND_RETRY_AFTER_MS": str(RETRY_AFTER_MS),
        },
    )
    service.start()
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            client = pb_grpc.CommandServiceStub(channel)
            await client.OpenAccount(
                pb.OpenAccountRequest(command_id=new_command_id(), account_id="acc", currency="USD")
            )
            await asyncio.to_thread(own_stack.kafka.kill)

            # The first wave: a batch stuck at the writer, the queue full behind it, the rest
            # refused while those still wait.
            first = [
                asyncio.ensure_future(client.Deposit(_deposit("acc"), timeout=120))
                for _ in range(WAVE)
            ]

            async def some_refused() -> bool:
                return any(call.done() for call in first)

            await eventually_async(some_refused, timeout=30, message="refusals while queued")
            assert not all(call.done() for call in first), "refusals come before the queue's"
            refusal = next(call for call in first if call.done()).exception()
            assert isinstance(refusal, grpc.aio.AioRpcError)
            assert refusal.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, refusal
            assert f"retry the same command in {RETRY_AFTER_MS} ms" in (refusal.details() or "")
            assert "LEDGER_COMMAND_QUEUE_MAX" in (refusal.details() or "")
            trailers = refusal.trailing_metadata() or ()
            assert ("grpc-retry-pushback-ms", str(RETRY_AFTER_MS)) in list(trailers)
            # A batch counts as its commands: one of QUEUE_MAX fits only into an empty queue.
            batch = pb.ExecuteBatchRequest(
                commands=[pb.Command(deposit=_deposit("acc")) for _ in range(QUEUE_MAX)]
            )
            with pytest.raises(grpc.aio.AioRpcError) as whole:
                await client.ExecuteBatch(batch, timeout=120)
            assert whole.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED, whole.value
            assert f"retry the same batch (its {QUEUE_MAX} commands do not fit)" in (
                whole.value.details() or ""
            )

            pid = service.pid
            assert pid is not None
            before = _rss_bytes(pid)
            codes: set[grpc.StatusCode] = set()
            for _ in range(FLOOD // WAVE):
                wave = [
                    asyncio.ensure_future(client.Deposit(_deposit("acc"), timeout=120))
                    for _ in range(WAVE)
                ]
                codes |= {
                    answer.code() for answer in await asyncio.gather(*map(_answer, wave)) if answer
                }
            grew = _rss_bytes(pid) - before

            assert grew < RSS_GROWTH_BOUND, f"RSS grew by {grew / 2**20:.1f} MiB"
            assert grpc.StatusCode.RESOURCE_EXHAUSTED in codes
            # Accepted commands fail with the broker gone; nothing else is answered.
            assert codes <= {grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE}
            assert service.is_running()

            await asyncio.to_thread(own_stack.kafka.start)
            retried = _deposit("acc")  # retried with its id until the broker takes it

            async def accepted() -> bool:
                call = asyncio.ensure_future(client.Deposit(retried, timeout=5))
                return await _answer(call) is None

            await eventually_async(accepted, timeout=60, message="writes resume after the broker")
            await asyncio.gather(*map(_answer, first))
    finally:
        service.stop()
        if not own_stack.kafka.is_running():
            own_stack.kafka.start()
