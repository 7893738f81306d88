"""The servers' one wrapper per method (ledger.call_wrapping) on a real in-process LedgerServer:
a call answered from the verified-token cache gets the same status as the first, concurrent
callers keep their own tokens, undecodable requests are refused before authentication, and
refused calls are counted."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from ledger.auth.keys import JwksFile
from ledger.auth.local import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalCredentials
from ledger.auth.local import ensure_local_credentials as made
from ledger.auth.policy import READ
from ledger.auth.settings import ServerSecurity
from ledger.auth.verification import TokenVerifier
from ledger.grpc_server import LedgerServer
from ledger.telemetry.metrics import GrpcServerMetrics
from ledger.v1 import queries_pb2, queries_pb2_grpc
from query_server.servicer import QueryServicer
from tests.eventually import eventually_async

GET_ACCOUNT = "/ledger.v1.QueryService/GetAccount"
# Passed the gate: the servicer answers that it has no read model yet.
PAST_THE_GATE = grpc.StatusCode.UNAVAILABLE


class Served:
    def __init__(self, port: int, registry: CollectorRegistry, credentials: LocalCredentials):
        self.port = port
        self.registry = registry
        self.credentials = credentials

    async def code(self, channel: grpc.aio.Channel, raw: bytes, token: str | None) -> Any:
        metadata = () if token is None else (("authorization", f"Bearer {token}"),)
        call: Any = channel.unary_unary(GET_ACCOUNT)
        try:
            await call(raw, metadata=metadata, timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code()
        return grpc.StatusCode.OK

    def handled(self, code: str) -> float:
        labels = {
            "grpc_type": "unary",
            "grpc_service": "ledger.v1.QueryService",
            "grpc_method": "GetAccount",
            "grpc_code": code,
        }
        return self.registry.get_sample_value("grpc_server_handled_total", labels) or 0.0


@pytest.fixture
async def served(tmp_path: Path) -> AsyncIterator[Served]:
    credentials = made(tmp_path / "credentials")
    verifier = TokenVerifier(JwksFile(credentials.jwks), LOCAL_ISSUER, LOCAL_AUDIENCE)
    registry = CollectorRegistry()
    server = LedgerServer(
        "ledger.v1.QueryService",
        QueryServicer(),
        queries_pb2_grpc.add_QueryServiceServicer_to_server,
        "127.0.0.1:0",
        GrpcServerMetrics.create(registry),
        ServerSecurity(verifier=verifier),  # tokens without TLS: enough for the wrapper
    )
    await server.start()
    try:
        yield Served(server.port, registry, credentials)
    finally:
        await server.stop(0)


def _account(account_id: str) -> bytes:
    return queries_pb2.GetAccountRequest(account_id=account_id).SerializeToString()


async def test_a_remembered_token_is_judged_as_on_its_first_call(served: Served) -> None:
    acme = served.credentials.mint([READ], accounts=["acme-*"])
    reader = served.credentials.token("reader")
    cases = [
        (_account("acme-1"), None, grpc.StatusCode.UNAUTHENTICATED),
        (_account("acme-1"), "not-a-jwt", grpc.StatusCode.UNAUTHENTICATED),
        (_account("acme-1"), reader, PAST_THE_GATE),
        (_account("acme-1"), acme, PAST_THE_GATE),
        (_account("globex-1"), acme, grpc.StatusCode.PERMISSION_DENIED),
        (_account("globex-1"), served.credentials.token("writer"), PAST_THE_GATE),
    ]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        for raw, token, expected in cases:
            for attempt in ("first", "remembered"):
                code = await served.code(channel, raw, token)
                assert code == expected, (attempt, expected)


async def test_concurrent_callers_are_each_judged_by_their_own_token(served: Served) -> None:
    acme = served.credentials.mint([READ], accounts=["acme-*"])
    reader = served.credentials.token("reader")
    globex = _account("globex-1")
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        await served.code(channel, globex, acme)  # both tokens remembered
        await served.code(channel, globex, reader)
        calls = [(acme, grpc.StatusCode.PERMISSION_DENIED), (reader, PAST_THE_GATE)] * 50
        codes = await asyncio.gather(*(served.code(channel, globex, t) for t, _ in calls))
    assert codes == [expected for _, expected in calls]


async def test_an_undecodable_request_is_refused_before_its_token_is_read(served: Served) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        assert await served.code(channel, b"\xff\xff\xff", None) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )
        # account_id (field 1) that is not UTF-8
        assert await served.code(channel, b"\x0a\x02\xff\xfe", None) == (
            grpc.StatusCode.INVALID_ARGUMENT
        )


async def test_refused_calls_are_counted_with_their_status(served: Served) -> None:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{served.port}") as channel:
        for _ in range(2):
            await served.code(channel, _account("acme-1"), None)
        await served.code(channel, _account("acme-1"), served.credentials.token("reader"))

    async def counted() -> bool:
        # The server records a call once its answer is sent: the client may see it first.
        return served.handled("UNAUTHENTICATED") == 2 and served.handled("UNAVAILABLE") == 1

    await eventually_async(counted, timeout=5.0, interval=0.01, message="refusals counted")
