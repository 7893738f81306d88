"""The command server refuses malformed fields before a command reaches the writer, and answers
every failure of the round trip with its documented status (INTERNAL only for a bug)."""

from __future__ import annotations

import grpc
import pytest

from command_server.event_store import AppendFailed
from command_server.servicer import CommandServicer
from command_server.writer.protocol import Ack, NotServing, WriterFailed
from ledger.command_ids import new_command_id
from ledger.domain.commands import Command
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc
from tests.unit.test_request_decoding import _started


class _Committer:
    """Stands in for the group committer: records what it is given, answers with `outcome`."""

    def __init__(self, outcome: Ack | Exception) -> None:
        self.outcome = outcome
        self.submitted: list[Command] = []

    async def submit(self, command: Command) -> Ack:
        self.submitted.append(command)
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return self.outcome


async def _deposit(
    committer: _Committer, request: pb.DepositRequest
) -> grpc.aio.AioRpcError | None:
    servicer = CommandServicer()
    servicer.committer = committer  # type: ignore[assignment]
    server = await _started(
        "ledger.v1.CommandService", servicer, pb_grpc.add_CommandServiceServicer_to_server
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            try:
                await pb_grpc.CommandServiceStub(channel).Deposit(request, timeout=5)
            except grpc.aio.AioRpcError as error:
                return error
            return None
    finally:
        await server.stop(0)


def _request(account_id: str = "acc-1") -> pb.DepositRequest:
    return pb.DepositRequest(command_id=new_command_id(), account_id=account_id, amount="1.00")


async def test_a_malformed_command_never_reaches_the_writer() -> None:
    committer = _Committer(Ack(2, "v1.MDox"))
    refused = await _deposit(committer, _request(account_id="acc\x00"))
    assert refused is not None
    assert refused.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "account_id" in (refused.details() or "")
    assert committer.submitted == []
    assert await _deposit(committer, _request()) is None
    assert len(committer.submitted) == 1


@pytest.mark.parametrize(
    ("failure", "code", "told"),
    [
        (WriterFailed("pipe garbled"), grpc.StatusCode.UNAVAILABLE, "retry with the same"),
        (AppendFailed("broker down"), grpc.StatusCode.UNAVAILABLE, "did not confirm the write"),
        (NotServing("shutting down"), grpc.StatusCode.UNAVAILABLE, "shutting down"),
        (KeyError("surprise"), grpc.StatusCode.INTERNAL, "see its log"),
    ],
)
async def test_each_failure_of_the_round_trip_has_its_status(
    failure: Exception, code: grpc.StatusCode, told: str
) -> None:
    refused = await _deposit(_Committer(failure), _request())
    assert refused is not None
    assert refused.code() == code
    assert told in (refused.details() or "")
    assert "surprise" not in (refused.details() or "")
