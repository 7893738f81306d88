"""The query server at its limits (issue 20): token waits end at the server's cap, calls past the
waiting-calls cap and streams past the watch cap get RESOURCE_EXHAUSTED naming their setting, an
oversized request gets gRPC's own RESOURCE_EXHAUSTED, and the server stays SERVING throughout."""

from __future__ import annotations

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.ledger_services import LedgerService
from ledger.consistency import ConsistencyToken
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.eventually import eventually_async
from tests.integration.query_server.read_model_writer import (
    PROMPTLY_S,
    ReadModelWriter,
    failure_of,
    next_update,
    unique_id,
)

pytestmark = pytest.mark.integration

MAX_WAIT_S = 3
MAX_WAITING = 3
MAX_WATCHES = 2
MAX_RECEIVE_BYTES = 4096
# A position the read model never reaches in these tests.
NEVER = ConsistencyToken.at(0, 10**12).encode()


@pytest.fixture(scope="module")
def query_server_env() -> dict[str, str]:
    """Small limits (conftest.py's query server has the defaults)."""
    return {
        "LEDGER_QUERY_MAX_WAIT_SECONDS": str(MAX_WAIT_S),
        "LEDGER_QUERY_MAX_WAITING_CALLS": str(MAX_WAITING),
        "LEDGER_QUERY_MAX_WATCHES": str(MAX_WATCHES),
        "LEDGER_GRPC_MAX_RECEIVE_BYTES": str(MAX_RECEIVE_BYTES),
    }


def _waiting(client: pb_grpc.QueryServiceAsyncStub, timeout: float) -> asyncio.Future[object]:
    return asyncio.ensure_future(
        client.GetAccount(
            pb.GetAccountRequest(account_id="a", consistency_token=NEVER), timeout=timeout
        )
    )


async def test_a_token_wait_ends_at_the_servers_cap_whatever_the_deadline(
    client: pb_grpc.QueryServiceAsyncStub,
) -> None:
    code, details = await failure_of(_waiting(client, timeout=60))

    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert f"within {MAX_WAIT_S}s" in details
    assert "the server's cap on token waits (LEDGER_QUERY_MAX_WAIT_SECONDS)" in details
    # A deadline shorter than the cap: the message says the call's deadline ended it.
    code, details = await failure_of(_waiting(client, timeout=0.5))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "the call's deadline" in details


async def test_calls_past_the_waiting_calls_cap_are_refused_until_a_wait_ends(
    client: pb_grpc.QueryServiceAsyncStub, query_server: LedgerService
) -> None:
    calls = [_waiting(client, timeout=60) for _ in range(MAX_WAITING + 2)]

    async def two_answered() -> bool:
        return sum(call.done() for call in calls) == 2

    # The two past the cap are answered at once, the others wait (up to the server's cap).
    await eventually_async(two_answered, timeout=MAX_WAIT_S - 0.5)
    answered = [call for call in calls if call.done()]
    waiting = [call for call in calls if not call.done()]
    refused = [await failure_of(call) for call in answered]
    assert [code for code, _ in refused] == [grpc.StatusCode.RESOURCE_EXHAUSTED] * 2
    assert "too many queries waiting for consistency tokens" in refused[0][1]
    assert "LEDGER_QUERY_MAX_WAITING_CALLS" in refused[0][1]
    # A call without a token never waits, so it is not refused.
    status = await client.GetProjectionStatus(pb.GetProjectionStatusRequest(), timeout=5)
    assert isinstance(status, pb.GetProjectionStatusResponse)
    waited = [await failure_of(call) for call in waiting]
    assert [code for code, _ in waited] == [grpc.StatusCode.DEADLINE_EXCEEDED] * MAX_WAITING
    # Their slots are free again: a new wait runs (to its own deadline) instead of being refused.
    code, _ = await failure_of(_waiting(client, timeout=0.5))
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert await _serving(query_server)


async def test_watches_past_the_cap_are_refused_and_closing_one_frees_a_slot(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    account = unique_id("watch-cap")
    await writer.open(account, partition=1)
    streams = [client.WatchAccount(pb.WatchAccountRequest(account_id=account))]
    streams.append(client.WatchAccount(pb.WatchAccountRequest(account_id=account)))
    for stream in streams:
        await next_update(stream)  # the stream holds its slot from its first message on

    code, details = await failure_of(
        client.WatchAccount(pb.WatchAccountRequest(account_id=account)).read()
    )
    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert f"already follows {MAX_WATCHES} accounts" in details
    assert "LEDGER_QUERY_MAX_WATCHES" in details

    streams.pop().cancel()

    async def watching() -> bool:
        stream = client.WatchAccount(pb.WatchAccountRequest(account_id=account))
        try:
            first = await asyncio.wait_for(stream.read(), PROMPTLY_S)
        except grpc.aio.AioRpcError as refusal:
            if refusal.code() != grpc.StatusCode.RESOURCE_EXHAUSTED:
                raise
            return False
        streams.append(stream)
        return isinstance(first, pb.WatchAccountResponse)

    await eventually_async(watching, timeout=PROMPTLY_S, message="a slot freed by the cancel")
    for stream in streams:
        stream.cancel()


async def test_an_oversized_request_gets_grpcs_resource_exhausted_and_the_server_serves_on(
    client: pb_grpc.QueryServiceAsyncStub, query_server: LedgerService, writer: ReadModelWriter
) -> None:
    code, details = await failure_of(
        client.GetAccount(pb.GetAccountRequest(account_id="x" * (2 * MAX_RECEIVE_BYTES)), timeout=5)
    )

    assert code == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "larger than max" in details
    assert await _serving(query_server)
    account = unique_id("after-oversized")
    await writer.open(account, partition=2)
    answer = await client.GetAccount(pb.GetAccountRequest(account_id=account), timeout=5)
    assert answer.account.account_id == account


async def _serving(service: LedgerService) -> bool:
    async with grpc.aio.insecure_channel(service.address) as channel:
        health = health_pb2_grpc.HealthStub(channel)
        reply = await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
    return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)
