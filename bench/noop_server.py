"""The baseline: a grpc.aio server with ledger.v1.CommandService/Deposit and
ledger.v1.QueryService/GetAccount that do nothing.

`python -m bench.noop_server` listens on `BENCH_NOOP_ADDR` and answers every Deposit with the same
fixed DepositResponse and every GetAccount with the same fixed GetAccountResponse (shaped like a
real answer, so that serialising it costs about the same), so the benchmark can compare the
command and query servers against the cost of gRPC itself in Python (same server library, same
defaults, same load generator). It also serves grpc.health.v1, so the stack's readiness probe
works for it as for the Ledger services.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
from google.protobuf.message import Message
from google.protobuf.timestamp_pb2 import Timestamp
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ledger.grpc_server import stop_on_signals
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import queries_pb2 as qpb

ADDRESS_VARIABLE = "BENCH_NOOP_ADDR"
_Context = grpc.aio.ServicerContext[object, object]
_FIXED = pb.DepositResponse(version=2, consistency_token="v1.MDow")
_MOMENT = Timestamp(seconds=1_790_000_000, nanos=123_000_000)
_FIXED_ACCOUNT = qpb.GetAccountResponse(
    account=qpb.Account(
        account_id="q-1234",
        currency="USD",
        owner="bench",
        status=qpb.ACCOUNT_STATUS_OPEN,
        balance="0.00",
        version=1,
        opened_at=_MOMENT,
        updated_at=_MOMENT,
    ),
    freshness=qpb.Freshness(
        # Six partitions, as a real answer names.
        consistency_token="v1.MDoxNjgzNCwxOjE2NTkwLDI6MTY3MTEsMzoxNjkwMiw0OjE2NjU1LDU6MTY3NjA",
        as_of=_MOMENT,
    ),
)


async def deposit(request: pb.DepositRequest, context: _Context) -> pb.DepositResponse:
    return _FIXED


async def get_account(request: qpb.GetAccountRequest, context: _Context) -> qpb.GetAccountResponse:
    return _FIXED_ACCOUNT


def command_service() -> grpc.GenericRpcHandler:
    """ledger.v1.CommandService with Deposit only."""
    return _one_method(
        "ledger.v1.CommandService", "Deposit", deposit, pb.DepositRequest, pb.DepositResponse
    )


def query_service() -> grpc.GenericRpcHandler:
    """ledger.v1.QueryService with GetAccount only."""
    return _one_method(
        "ledger.v1.QueryService",
        "GetAccount",
        get_account,
        qpb.GetAccountRequest,
        qpb.GetAccountResponse,
    )


def _one_method(
    service: str,
    method: str,
    behaviour: Callable[[Any, _Context], Awaitable[Message]],
    request: type[Message],
    response: type[Message],
) -> grpc.GenericRpcHandler:
    """A service with one unary method, (de)serialised by the generated classes as the real
    servers' are, so that the comparison pays the same protobuf costs."""
    handler = grpc.unary_unary_rpc_method_handler(
        behaviour,
        request_deserializer=request.FromString,
        response_serializer=response.SerializeToString,
    )
    return grpc.method_handlers_generic_handler(service, {method: handler})


async def serve(address: str) -> None:
    stopping = stop_on_signals()
    # Not a LedgerServer: the baseline is grpc itself, default options, no interceptor.
    server = grpc.aio.server()
    server.add_generic_rpc_handlers((command_service(), query_service()))
    health_servicer = health.aio.HealthServicer()
    health_pb2_grpc.add_HealthServicer_to_server(health_servicer, server)
    server.add_insecure_port(address)
    await server.start()
    await health_servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    await stopping.wait()
    await server.stop(1)


def main() -> None:
    asyncio.run(serve(os.environ[ADDRESS_VARIABLE]))


if __name__ == "__main__":
    main()
