"""Forwarding: a command that another shard owns is sent on to it, and its answer sent back.

At most one hop: the forwarded call carries `ledger-forwarded-by` (the sender's view of the
configuration), and a shard that receives a forwarded command it does not own refuses it
(WrongOwner) instead of forwarding again. The owner marks its answers to forwarded calls with
`ledger-answered-by` in the initial metadata, so that the forwarder can tell the owner's own
UNAVAILABLE (passed on unchanged) from a peer it could not reach (ShardUnreachable). The caller's
`authorization` goes along and the owner checks it again; the caller's remaining deadline goes
along too. README, "Shards and routing"; docs/design.md, decision 13.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

import grpc

from command_server.group_commit import Verdict
from command_server.peers import Peers
from command_server.routing import BatchPlan, Router
from ledger.domain.commands import Command
from ledger.environment import SettingsError
from ledger.v1 import commands_pb2 as pb

FORWARDED_BY = "ledger-forwarded-by"
ANSWERED_BY = "ledger-answered-by"
_AUTHORIZATION = "authorization"
_SERVICE = pb.DESCRIPTOR.services_by_name["CommandService"].full_name

RECONNECT_OPTIONS = (
    # gRPC's default reconnect backoff grows to 120 s: after a peer's restart its shard's
    # commands would be refused as unreachable for up to two minutes. A few peers afford a
    # reconnect attempt every second.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)

_Context = grpc.aio.ServicerContext[Any, Any]
_Reply = TypeVar("_Reply", bound=Any)
Outcome = Verdict | pb.CommandResult | Exception
"""What became of one command of a split batch: decided here, answered by its owner, or the
failure of its whole part."""


class ShardUnreachable(RuntimeError):
    """The owning shard could not be reached (down, restarting, unreachable): retryable."""


class ForwardsFull(RuntimeError):
    """Too many forwarded calls in flight; like a full command queue: retry after a while."""

    def __init__(self, in_flight: int, retry_after_ms: int) -> None:
        super().__init__(
            f"this shard is forwarding {in_flight:,} calls to the shards that own their accounts "
            f"already (LEDGER_FORWARD_MAX_IN_FLIGHT); retry in {retry_after_ms} ms with the same "
            "command_id, or send commands to the shard that owns their account"
        )
        self.retry_after_ms = retry_after_ms


class OwnerAnswered(Exception):
    """The owning shard's refusal, to be passed on to the caller unchanged."""

    def __init__(
        self, code: grpc.StatusCode, details: str, trailers: tuple[tuple[str, str | bytes], ...]
    ) -> None:
        super().__init__(details)
        self.code = code
        self.details = details
        self.trailers = trailers


@dataclass(frozen=True, slots=True)
class PeerChannel:
    index: int
    address: str
    channel: grpc.aio.Channel


def open_peer_channels(
    peers: Peers, own_index: int, options: Sequence[tuple[str, Any]]
) -> dict[int, PeerChannel]:
    """One channel to each other shard (created now, connected on first use)."""
    credentials = _credentials(peers)
    options = (*RECONNECT_OPTIONS, *options)
    channels: dict[int, PeerChannel] = {}
    for index, address in enumerate(peers.addresses):
        if index == own_index:
            continue
        if credentials is None:
            channel = grpc.aio.insecure_channel(address, options=options)
        else:
            channel = grpc.aio.secure_channel(address, credentials, options=options)
        channels[index] = PeerChannel(index, address, channel)
    return channels


def _credentials(peers: Peers) -> grpc.ChannelCredentials | None:
    """TLS trusting `ca_file`, server names checked (gRPC's default), with this shard's own
    certificate when the peers require client certificates; None: plaintext."""
    if peers.ca_file is None:
        return None
    key = chain = None
    if peers.client_cert_file and peers.client_key_file:
        key, chain = _read(peers.client_key_file), _read(peers.client_cert_file)
    return grpc.ssl_channel_credentials(_read(peers.ca_file), key, chain)


def _read(path: str) -> bytes:
    try:
        return Path(path).read_bytes()
    except OSError as exc:
        raise SettingsError(f"cannot read {path} (command-server peers): {exc.strerror}") from None


class Forwarder:
    def __init__(
        self,
        router: Router,
        channels: Mapping[int, PeerChannel],
        *,
        max_in_flight: int,
        timeout_seconds: float,
        retry_after_ms: int,
    ) -> None:
        self.router = router
        self._channels = channels
        self._max_in_flight = max_in_flight
        self._timeout = timeout_seconds
        self._retry_after_ms = retry_after_ms
        self._in_flight = 0
        self._methods: dict[tuple[int, str], grpc.aio.UnaryUnaryMultiCallable[Any, Any]] = {}

    async def close(self) -> None:
        for peer in self._channels.values():
            await peer.channel.close()

    async def owner_elsewhere(self, command: Command, context: _Context) -> int | None:
        """The shard to forward `command` to, or None when this shard decides it (then a
        forwarded call is told, in its initial metadata, that the owner answers)."""
        sender = _metadata(context, FORWARDED_BY)
        if self.router.is_local(command):
            if sender is not None:
                await context.send_initial_metadata(((ANSWERED_BY, str(self.router.shard.index)),))
            return None
        if sender is not None:
            raise self.router.refuse_forwarded(command, sender)
        return self.router.owner_of(command)

    async def plan_batch(
        self, commands: Mapping[int, Command], atomic: bool, context: _Context
    ) -> BatchPlan:
        """Where the batch's commands go; refuses a forwarded batch holding any command this
        shard does not own (WrongOwner), and an atomic batch spanning shards."""
        plan = self.router.plan(commands.items(), atomic=atomic)
        sender = _metadata(context, FORWARDED_BY)
        if sender is not None:
            if plan.foreign:
                position = next(iter(plan.foreign.values()))[0]
                raise self.router.refuse_forwarded(commands[position], sender)
            await context.send_initial_metadata(((ANSWERED_BY, str(self.router.shard.index)),))
        return plan

    async def call(
        self, owner: int, method: str, request: Any, reply: type[_Reply], context: _Context
    ) -> _Reply:
        """The owner's reply to `request`; raises OwnerAnswered (its refusal, unchanged),
        ShardUnreachable or ForwardsFull."""
        if self._in_flight >= self._max_in_flight:
            raise ForwardsFull(self._in_flight, self._retry_after_ms)
        peer = self._channels[owner]
        key = (owner, method)
        callable_ = self._methods.get(key)
        if callable_ is None:
            callable_ = peer.channel.unary_unary(
                f"/{_SERVICE}/{method}",
                request_serializer=type(request).SerializeToString,
                response_deserializer=reply.FromString,
            )
            self._methods[key] = callable_
        remaining = context.time_remaining()
        metadata = [(FORWARDED_BY, self.router.view)]
        authorization = _metadata(context, _AUTHORIZATION)
        if authorization is not None:
            metadata.append((_AUTHORIZATION, authorization))
        self._in_flight += 1
        try:
            answer: _Reply = await callable_(
                request,
                timeout=self._timeout if remaining is None else max(remaining, 0.0),
                metadata=tuple(metadata),
            )
            return answer
        except grpc.aio.AioRpcError as error:
            raise _failure(peer, error) from None
        finally:
            self._in_flight -= 1

    async def split_batch(
        self,
        plan: BatchPlan,
        request: pb.ExecuteBatchRequest,
        decide_here: Callable[[list[int]], Awaitable[list[Verdict]]],
        context: _Context,
    ) -> dict[int, Outcome]:
        """A non-atomic batch spanning shards: each owner's part at once (this shard's through
        `decide_here`), one outcome per position of the plan."""

        async def forwarded(owner: int, positions: list[int]) -> Sequence[Outcome]:
            part = pb.ExecuteBatchRequest(commands=[request.commands[p] for p in positions])
            try:
                answer = await self.call(
                    owner, "ExecuteBatch", part, pb.ExecuteBatchResponse, context
                )
            except (OwnerAnswered, ShardUnreachable, ForwardsFull) as failure:
                return [failure] * len(positions)
            return list(answer.results)

        async def here(positions: list[int]) -> Sequence[Outcome]:
            try:
                return await decide_here(positions)
            except Exception as failure:
                return [failure] * len(positions)

        parts = [(plan.local, here(plan.local))] if plan.local else []
        parts += [(positions, forwarded(o, positions)) for o, positions in plan.foreign.items()]
        answers = await asyncio.gather(*(answer for _, answer in parts))
        outcomes: dict[int, Outcome] = {}
        for (positions, _), results in zip(parts, answers, strict=True):
            outcomes.update(zip(positions, results, strict=True))
        return outcomes


def _failure(peer: PeerChannel, error: grpc.aio.AioRpcError) -> Exception:
    answered = any(key == ANSWERED_BY for key, _ in error.initial_metadata() or ())
    if error.code() == grpc.StatusCode.UNAVAILABLE and not answered:
        return ShardUnreachable(
            f"shard {peer.index}, which owns the command's account, cannot be reached at "
            f"{peer.address} ({error.details()}); retry with the same command_id: a retry is "
            "answered as the original, never applied twice"
        )
    trailers = tuple((key, value) for key, value in error.trailing_metadata() or ())
    return OwnerAnswered(error.code(), error.details() or "", trailers)


def _metadata(context: _Context, name: str) -> str | None:
    for key, value in context.invocation_metadata() or ():
        if key == name:
            return value if isinstance(value, str) else None
    return None
