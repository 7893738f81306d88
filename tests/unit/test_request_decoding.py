"""Requests gRPC cannot decode are answered INVALID_ARGUMENT naming their type, not UNKNOWN."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.message import Message
from prometheus_client import CollectorRegistry

from command_server.servicer import CommandServicer
from ledger.auth.settings import ServerSecurity
from ledger.grpc_server import LedgerServer
from ledger.telemetry.metrics import GrpcServerMetrics
from ledger.v1 import commands_pb2, commands_pb2_grpc, queries_pb2, queries_pb2_grpc
from query_server.servicer import QueryServicer

# Field 2 (account_id in both requests below), length 2, bytes that are not UTF-8.
_NOT_UTF8 = b"\x12\x02\xff\xfe"
_NOT_PROTOBUF = b"\xff\xff\xff"


async def _started(name: str, servicer: object, add: object) -> LedgerServer:
    """A plaintext server without tokens on a free port."""
    server = LedgerServer(
        name,
        servicer,
        add,  # type: ignore[arg-type]
        "127.0.0.1:0",
        GrpcServerMetrics.create(CollectorRegistry()),
        ServerSecurity(),
    )
    await server.start()
    return server


async def _code_of(port: int, method: str, raw: bytes, streaming: bool) -> tuple[object, str]:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        try:
            if streaming:
                stream: Any = channel.unary_stream(method)
                async for _ in stream(raw, timeout=5):
                    pass
            else:
                unary: Any = channel.unary_unary(method)
                await unary(raw, timeout=5)
        except grpc.aio.AioRpcError as error:
            return error.code(), error.details() or ""
    return grpc.StatusCode.OK, ""


@pytest.mark.parametrize("raw", [_NOT_UTF8, _NOT_PROTOBUF], ids=["not-utf8", "not-protobuf"])
async def test_an_undecodable_request_is_invalid_argument_on_both_services(raw: bytes) -> None:
    commands = await _started(
        "ledger.v1.CommandService",
        CommandServicer(),
        commands_pb2_grpc.add_CommandServiceServicer_to_server,
    )
    queries = await _started(
        "ledger.v1.QueryService",
        QueryServicer(),
        queries_pb2_grpc.add_QueryServiceServicer_to_server,
    )
    try:
        calls: list[tuple[int, str, bool, type[Message]]] = [
            (
                commands.port,
                "/ledger.v1.CommandService/Deposit",
                False,
                commands_pb2.DepositRequest,
            ),
            (
                queries.port,
                "/ledger.v1.QueryService/GetAccount",
                False,
                queries_pb2.GetAccountRequest,
            ),
            (
                queries.port,
                "/ledger.v1.QueryService/WatchAccount",
                True,
                queries_pb2.WatchAccountRequest,
            ),
        ]
        for port, method, streaming, message in calls:
            code, details = await _code_of(port, method, raw, streaming)
            assert code == grpc.StatusCode.INVALID_ARGUMENT, (method, code, details)
            assert f"not a valid {message.DESCRIPTOR.full_name}" in details
    finally:
        await commands.stop(0)
        await queries.stop(0)
