"""The command server refuses malformed fields before a command reaches the writer, and answers
every failure of the round trip with its documented status (INTERNAL only for a bug)."""

from __future__ import annotations

from typing import Any

import grpc
import pytest

from command_server.event_store import AppendFailed
from command_server.group_commit import Verdict
from command_server.servicer import CommandServicer
from command_server.writer.protocol import (
    Ack,
    NotServing,
    PackedCommand,
    WriterFailed,
    pack_command,
    unpack_command,
)
from ledger.command_ids import new_command_id
from ledger.domain.commands import Command
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc
from tests.unit.test_request_decoding import _started


class _Committer:
    """Stands in for the group committer of one shard (or of several, `owns_every_account`
    False): records what it is given, answers with `outcome`."""

    def __init__(self, outcome: Ack | Exception, owns_every_account: bool = True) -> None:
        self.outcome = outcome
        self.owns_every_account = owns_every_account
        self.submitted: list[Command] = []

    def misrouted(self, command: Command) -> None:
        return None

    def crosses_shards(self, command: Command) -> bool:
        return False

    async def submit(self, command: Command) -> Ack:
        (verdict,) = await self.submit_packed([pack_command(command)], atomic=False)
        if isinstance(verdict, BaseException):
            raise verdict
        return verdict

    async def submit_packed(self, packed: list[PackedCommand], *, atomic: bool) -> list[Verdict]:
        self.submitted += [unpack_command(p) for p in packed]
        if isinstance(self.outcome, Exception):
            raise self.outcome
        return [self.outcome] * len(packed)


async def _deposit(
    committer: _Committer, request: pb.DepositRequest
) -> grpc.aio.AioRpcError | None:
    return await _call(committer, "Deposit", request)


async def _call(committer: _Committer, method: str, request: Any) -> grpc.aio.AioRpcError | None:
    servicer = CommandServicer()
    servicer.committer = committer  # type: ignore[assignment]
    server = await _started(
        "ledger.v1.CommandService", servicer, pb_grpc.add_CommandServiceServicer_to_server
    )
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            try:
                await getattr(pb_grpc.CommandServiceStub(channel), method)(request, timeout=5)
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


_REQUESTS = [
    ("OpenAccount", lambda i: pb.OpenAccountRequest(command_id=i, account_id="a", currency="USD")),
    ("Deposit", lambda i: pb.DepositRequest(command_id=i, account_id="a", amount="2.50", memo="m")),
    ("Withdraw", lambda i: pb.WithdrawRequest(command_id=i, account_id="a", amount="1")),
    (
        "Transfer",
        lambda i: pb.TransferRequest(
            command_id=i, from_account_id="a", to_account_id="b", amount="3", expected_version=4
        ),
    ),
    ("CloseAccount", lambda i: pb.CloseAccountRequest(command_id=i, account_id="a")),
]


@pytest.mark.parametrize(("method", "request_of"), _REQUESTS)
async def test_one_shard_commits_what_the_general_path_would_have(
    method: str, request_of: Any
) -> None:
    """The one-shard path packs a unary request straight from its fields; the general path
    (several shards) builds the domain command first: the writer gets the same command."""
    request = request_of(new_command_id())
    straight, general = _Committer(Ack(2, "v1.MDox")), _Committer(Ack(2, "v1.MDox"), False)
    assert await _call(straight, method, request) is None
    assert await _call(general, method, request) is None
    assert straight.submitted == general.submitted
    assert len(straight.submitted) == 1
