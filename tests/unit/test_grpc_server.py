"""LedgerServer: health for the server and the service by name, reflection, NOT_SERVING first."""

from __future__ import annotations

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc
from prometheus_client import CollectorRegistry

from ledger.auth.settings import ServerSecurity
from ledger.grpc_server import LedgerServer
from ledger.server_limits import ServerLimits
from ledger.telemetry.metrics import GrpcServerMetrics
from ledger.v1 import queries_pb2, queries_pb2_grpc
from query_server.servicer import QueryServicer

SERVICE = queries_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name


async def _statuses(channel: grpc.aio.Channel) -> list[int]:
    stub = health_pb2_grpc.HealthStub(channel)
    return [
        (await stub.Check(health_pb2.HealthCheckRequest(service=name), timeout=5)).status
        for name in ("", SERVICE)
    ]


async def _started(limits: ServerLimits = ServerLimits()) -> LedgerServer:  # noqa: B008
    server = LedgerServer(
        SERVICE,
        QueryServicer(),
        queries_pb2_grpc.add_QueryServiceServicer_to_server,
        "127.0.0.1:0",
        GrpcServerMetrics.create(CollectorRegistry()),
        ServerSecurity(),  # plaintext, no authentication
        limits=limits,
    )
    await server.start()
    return server


async def test_health_answers_not_serving_until_the_service_says_it_serves() -> None:
    server = await _started()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            assert await _statuses(channel) == [health_pb2.HealthCheckResponse.NOT_SERVING] * 2
            await server.serving(True)
            assert await _statuses(channel) == [health_pb2.HealthCheckResponse.SERVING] * 2
            await server.serving(False)
            assert await _statuses(channel) == [health_pb2.HealthCheckResponse.NOT_SERVING] * 2
    finally:
        await server.stop(0)


async def test_reflection_lists_the_service_health_and_itself() -> None:
    server = await _started()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            stub = reflection_pb2_grpc.ServerReflectionStub(channel)
            request = reflection_pb2.ServerReflectionRequest(list_services="")
            async for reply in stub.ServerReflectionInfo(iter([request])):
                names = {s.name for s in reply.list_services_response.service}
                break
    finally:
        await server.stop(0)

    assert names == {SERVICE, "grpc.health.v1.Health", "grpc.reflection.v1alpha.ServerReflection"}


async def test_calls_past_the_concurrent_calls_limit_get_grpcs_resource_exhausted() -> None:
    server = await _started(ServerLimits(max_concurrent_calls=1))
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            health = health_pb2_grpc.HealthStub(channel)
            watch = health.Watch(health_pb2.HealthCheckRequest(service=""))
            await watch.read()  # the one call allowed, running until cancelled
            with pytest.raises(grpc.aio.AioRpcError) as refused:
                await health.Check(health_pb2.HealthCheckRequest(service=""), timeout=5)
            watch.cancel()
    finally:
        await server.stop(0)

    assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
    assert refused.value.details() == "Concurrent RPC limit exceeded!"
