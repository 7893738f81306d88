"""The forwarder: the caller's deadline and token go along, the owner's refusal comes back
unchanged, an unreachable peer is named, and forwards in flight are bounded."""

from __future__ import annotations

import asyncio
from typing import Any, cast

import grpc
import pytest

from command_server.forwarding import (
    ANSWERED_BY,
    FORWARDED_BY,
    Forwarder,
    ForwardsFull,
    OwnerAnswered,
    PeerChannel,
    ShardUnreachable,
)
from command_server.routing import Router
from command_server.shards import Shard
from ledger.v1 import commands_pb2 as pb


class _Context:
    def __init__(self, remaining: float | None, metadata: tuple[tuple[str, str], ...]) -> None:
        self._remaining = remaining
        self._metadata = metadata

    def time_remaining(self) -> float | None:
        return self._remaining

    def invocation_metadata(self) -> tuple[tuple[str, str], ...]:
        return self._metadata


class _Channel:
    """Answers every call with `answer` (or raises it), after `gate` opens."""

    def __init__(self, answer: Any, gate: asyncio.Event | None = None) -> None:
        self.answer = answer
        self.gate = gate
        self.calls: list[dict[str, Any]] = []

    def unary_unary(self, method: str, **_: Any) -> Any:
        async def call(request: Any, **options: Any) -> Any:
            self.calls.append({"method": method, **options})
            if self.gate is not None:
                await self.gate.wait()
            if isinstance(self.answer, Exception):
                raise self.answer
            return self.answer

        return call


def _forwarder(channel: _Channel, max_in_flight: int = 10) -> Forwarder:
    peer = PeerChannel(1, "127.0.0.1:50061", cast(Any, channel))
    return Forwarder(
        Router(Shard(0, 2, 6)),
        {1: peer},
        max_in_flight=max_in_flight,
        timeout_seconds=30.0,
        retry_after_ms=250,
    )


def _error(
    code: grpc.StatusCode, details: str, initial: tuple[tuple[str, str], ...] = ()
) -> grpc.aio.AioRpcError:
    trailers = grpc.aio.Metadata(("grpc-retry-pushback-ms", "1000"))
    return grpc.aio.AioRpcError(code, grpc.aio.Metadata(*initial), trailers, details)


async def _deposit(forwarder: Forwarder, context: _Context) -> pb.DepositResponse:
    return await forwarder.call(1, "Deposit", REQUEST, pb.DepositResponse, cast(Any, context))


REQUEST = pb.DepositRequest(command_id="x", account_id="a", amount="1")
CALLER = (("authorization", "Bearer t0ken"), ("other", "not passed on"))


async def test_the_callers_deadline_and_token_go_along_marked_as_forwarded() -> None:
    channel = _Channel(pb.DepositResponse(version=4))
    reply = await _deposit(_forwarder(channel), _Context(2.5, CALLER))
    assert reply.version == 4
    (call,) = channel.calls
    assert call["method"] == "/ledger.v1.CommandService/Deposit"
    assert call["timeout"] == 2.5
    sent = dict(call["metadata"])
    assert sent["authorization"] == "Bearer t0ken"
    assert sent[FORWARDED_BY] == "shard 0 of 2 over 6 partitions"
    assert "other" not in sent


async def test_the_owners_refusal_comes_back_unchanged_with_its_trailers() -> None:
    answered = ((ANSWERED_BY, "1"),)
    for code in (grpc.StatusCode.RESOURCE_EXHAUSTED, grpc.StatusCode.UNAVAILABLE):
        channel = _Channel(_error(code, "the owner's words", answered))
        with pytest.raises(OwnerAnswered) as refused:
            await _deposit(_forwarder(channel), _Context(None, CALLER))
        assert (refused.value.code, refused.value.details) == (code, "the owner's words")
        assert refused.value.trailers == (("grpc-retry-pushback-ms", "1000"),)
        assert channel.calls[0]["timeout"] == 30.0  # no deadline from the caller: the default


async def test_a_peer_that_did_not_answer_is_unreachable_by_name() -> None:
    channel = _Channel(_error(grpc.StatusCode.UNAVAILABLE, "failed to connect to all addresses"))
    with pytest.raises(ShardUnreachable, match=r"shard 1, .* 127\.0\.0\.1:50061 .*retry"):
        await _deposit(_forwarder(channel), _Context(None, CALLER))


async def test_forwards_in_flight_are_bounded() -> None:
    gate = asyncio.Event()
    forwarder = _forwarder(_Channel(pb.DepositResponse(version=1), gate), max_in_flight=1)
    context = _Context(None, CALLER)
    first = asyncio.create_task(_deposit(forwarder, context))
    await asyncio.sleep(0)
    with pytest.raises(ForwardsFull) as full:
        await _deposit(forwarder, context)
    assert full.value.retry_after_ms == 250
    gate.set()
    assert (await first).version == 1
    # The slot is free again.
    await _deposit(forwarder, context)
