"""Two command-server shards in one process (servicers on real gRPC ports, the group committer
stood in for): the servicer routes, forwards and merges as the README says."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import pytest

from command_server.forwarding import Forwarder, open_peer_channels
from command_server.group_commit import Misrouted, Verdict
from command_server.peers import Peers
from command_server.routing import Router
from command_server.servicer import CommandServicer
from command_server.shards import Shard
from command_server.writer.protocol import Ack, PackedCommand, unpack_command
from ledger.command_ids import new_command_id
from ledger.domain.commands import Command, Transfer, accounts_of
from ledger.grpc_server import LedgerServer
from ledger.partitioning import partition_of
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc
from tests.unit.test_request_decoding import _started

SERVICE = "ledger.v1.CommandService"


class _Committer:
    """Acks every command with the shard's index as the version; refuses cross-shard
    transfers as the group committer does (Misrouted) until the saga decides them."""

    def __init__(self, shard: Shard) -> None:
        self.shard = shard
        self.decided: list[Command] = []

    def misrouted(self, command: Command) -> Misrouted | None:
        owners = {self.shard.owner_of(self.shard.partition_of(a)) for a in accounts_of(command)}
        return None if owners == {self.shard.index} else Misrouted(f"spans shards {owners}")

    async def submit_packed(self, packed: list[PackedCommand], *, atomic: bool) -> list[Verdict]:
        commands = [unpack_command(p) for p in packed]
        self.decided += commands
        return [Ack(self.shard.index + 1, f"v1.{'MDox' if self.shard.index else 'MTox'}")] * len(
            commands
        )


def _on(shard: int, prefix: str) -> str:
    names = (f"{prefix}-{n}" for n in range(1000))
    return next(a for a in names if partition_of(a, 6) % 2 == shard)


@pytest.fixture
async def shards() -> AsyncIterator[list[tuple[LedgerServer, _Committer]]]:
    started = []
    for index in range(2):
        servicer = CommandServicer()
        committer = _Committer(Shard(index, 2, 6))
        servicer.committer = committer  # type: ignore[assignment]
        server = await _started(SERVICE, servicer, pb_grpc.add_CommandServiceServicer_to_server)
        started.append((server, committer, servicer))
    peers = Peers(addresses=tuple(f"127.0.0.1:{server.port}" for server, _, _ in started))
    for index, (_, committer, servicer) in enumerate(started):
        servicer.forwarder = Forwarder(
            Router(committer.shard),
            open_peer_channels(peers, index, ()),
            max_in_flight=10,
            timeout_seconds=5,
            retry_after_ms=100,
        )
    yield [(server, committer) for server, committer, _ in started]
    for server, _, servicer in started:
        assert servicer.forwarder is not None
        await servicer.forwarder.close()
        await server.stop(0)


async def _batch(server: LedgerServer, commands: list[pb.Command]) -> pb.ExecuteBatchResponse:
    async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
        request = pb.ExecuteBatchRequest(commands=commands)
        reply: pb.ExecuteBatchResponse = await pb_grpc.CommandServiceStub(channel).ExecuteBatch(
            request, timeout=5
        )
        return reply


def _deposit(account: str) -> pb.Command:
    return pb.Command(
        deposit=pb.DepositRequest(command_id=new_command_id(), account_id=account, amount="1")
    )


async def test_a_spread_batch_is_split_merged_in_order_with_one_token(
    shards: list[tuple[LedgerServer, _Committer]],
) -> None:
    (entry, here), (_, there) = shards
    commands = [_deposit(_on(1, "a")), _deposit(_on(0, "b")), _deposit(_on(1, "c"))]
    reply = await _batch(entry, commands)
    assert [(r.code, r.version) for r in reply.results] == [(0, 2), (0, 1), (0, 2)]
    assert [accounts_of(c)[0] for c in here.decided] == [_on(0, "b")]
    assert [accounts_of(c)[0] for c in there.decided] == [_on(1, "a"), _on(1, "c")]
    assert reply.consistency_token == "v1.MDoxLDE6MQ"  # 0:1 and 1:1 merged


async def test_a_cross_shard_transfer_stays_here_while_the_rest_goes_to_its_owner(
    shards: list[tuple[LedgerServer, _Committer]],
) -> None:
    (entry, here), (_, there) = shards
    transfer = pb.TransferRequest(
        command_id=new_command_id(),
        from_account_id=_on(0, "from"),
        to_account_id=_on(1, "to"),
        amount="1",
    )
    reply = await _batch(entry, [pb.Command(transfer=transfer), _deposit(_on(1, "d"))])
    # The transfer is shard 0's (its debited account) and refused here, not forwarded; only
    # the deposit goes to shard 1.
    assert [r.code for r in reply.results] == [grpc.StatusCode.FAILED_PRECONDITION.value[0], 0]
    assert "spans shards" in reply.results[0].message
    assert here.decided == []
    assert [accounts_of(c)[0] for c in there.decided] == [_on(1, "d")]
    assert not any(isinstance(c, Transfer) for c in there.decided)
