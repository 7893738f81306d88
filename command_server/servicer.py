"""ledger.v1.CommandService: translates requests into domain commands and outcomes into replies."""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import NoReturn, TypeVar

import grpc

from command_server import batch_admission, requests
from command_server.event_store import AppendFailed
from command_server.forwarding import (
    Forwarder,
    ForwardsFull,
    Outcome,
    OwnerAnswered,
    ShardUnreachable,
)
from command_server.group_commit import GroupCommitter, Misrouted, Overloaded, Verdict
from command_server.routing import AtomicAcrossShards, WrongOwner
from command_server.transfers_in_flight import COMPLETED, REFUNDED
from command_server.writer.protocol import (
    Ack,
    CommandIdReused,
    NotApplied,
    NotServing,
    PackedCommand,
    WriterFailed,
    pack_command,
    unpack_command,
)
from ledger.consistency import ConsistencyToken, encode_positions
from ledger.domain.commands import Command, EraseOwner
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.domain.validation import require_command_id, require_fields
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

_STATUS_OF_REJECTION = {
    RejectionKind.INVALID: grpc.StatusCode.INVALID_ARGUMENT,
    RejectionKind.NOT_FOUND: grpc.StatusCode.NOT_FOUND,
    RejectionKind.ALREADY_EXISTS: grpc.StatusCode.ALREADY_EXISTS,
    RejectionKind.PRECONDITION: grpc.StatusCode.FAILED_PRECONDITION,
    RejectionKind.VERSION_CONFLICT: grpc.StatusCode.ABORTED,
}

_RETRY = "retry with the same command_id: a retry is answered as the original, never applied twice"

# Every failure a command's round trip (group commit, the pipe, the writer) may end in: its
# status, and what the caller is told ("{}" is the failure's own text). Anything else is a bug.
_STATUS_OF: tuple[tuple[type[Exception], grpc.StatusCode, str], ...] = (
    (CommandIdReused, grpc.StatusCode.ALREADY_EXISTS, "{}"),
    (Overloaded, grpc.StatusCode.RESOURCE_EXHAUSTED, "{}"),
    (NotServing, grpc.StatusCode.UNAVAILABLE, "{}"),
    (NotApplied, grpc.StatusCode.ABORTED, "{}"),
    (Misrouted, grpc.StatusCode.FAILED_PRECONDITION, "{}"),
    (ShardUnreachable, grpc.StatusCode.UNAVAILABLE, "{}"),
    (ForwardsFull, grpc.StatusCode.RESOURCE_EXHAUSTED, "{}"),
    (WrongOwner, grpc.StatusCode.FAILED_PRECONDITION, "{}"),
    (AtomicAcrossShards, grpc.StatusCode.FAILED_PRECONDITION, "{}"),
    (
        AppendFailed,
        grpc.StatusCode.UNAVAILABLE,
        "the event store did not confirm the write ({}); " + _RETRY,
    ),
    (
        WriterFailed,
        grpc.StatusCode.UNAVAILABLE,
        "the command server's writer failed ({}); " + _RETRY,
    ),
)


def _status_of(error: BaseException) -> tuple[grpc.StatusCode, str]:
    """The status and message that answer a command which ended in `error`."""
    if isinstance(error, Rejection):
        return _STATUS_OF_REJECTION[error.kind], error.message
    if isinstance(error, OwnerAnswered):
        return error.code, error.details
    for kind, code, message in _STATUS_OF:
        if isinstance(error, kind):
            if kind is WriterFailed:
                log.error("the writer failed a command: %s", error)
            return code, message.format(error)
    log.error("bug answering a command", exc_info=error)
    return grpc.StatusCode.INTERNAL, "internal error in the command server (see its log)"


MAX_BATCH_COMMANDS = 8_000
"""Commands one ExecuteBatch may hold (TigerBeetle takes up to 8,190 per request); the command
server's default receive limit (`command_server.settings.MAX_RECEIVE_BYTES`) holds as many of
the largest valid commands."""

_Context = grpc.aio.ServicerContext[object, object]
# Every command is answered alike: the account's new version and a consistency token.
_Reply = TypeVar(
    "_Reply",
    pb.OpenAccountResponse,
    pb.DepositResponse,
    pb.WithdrawResponse,
    pb.TransferResponse,
    pb.CloseAccountResponse,
    pb.EraseOwnerResponse,
)


class CommandServicer(pb_grpc.CommandServiceServicer):
    def __init__(
        self,
        command_id_max_skew: timedelta = timedelta(seconds=60),
        transfer_wait_seconds: float = 5.0,
    ) -> None:
        # Set by the composition root once the write model is rebuilt; until then: UNAVAILABLE.
        self.committer: GroupCommitter | None = None
        # Set with more than one shard and LEDGER_COMMAND_PEERS: commands of other shards go
        # there; None: one shard, or commands of other shards are refused (Misrouted).
        self.forwarder: Forwarder | None = None
        self._max_skew = command_id_max_skew
        self._horizon = batch_admission.UnaryHorizon(
            command_id_max_skew // timedelta(microseconds=1)
        )
        self._transfer_wait = transfer_wait_seconds

    async def OpenAccount(
        self, request: pb.OpenAccountRequest, context: _Context
    ) -> pb.OpenAccountResponse:
        packed = self._packed_here("open_account", request)
        if packed is not None:
            return await self._submit_packed(packed, context, pb.OpenAccountResponse)
        command = requests.open_account(request)
        return await self._submit(command, request, context, pb.OpenAccountResponse)

    async def Deposit(self, request: pb.DepositRequest, context: _Context) -> pb.DepositResponse:
        packed = self._packed_here("deposit", request)
        if packed is not None:
            return await self._submit_packed(packed, context, pb.DepositResponse)
        return await self._submit(requests.deposit(request), request, context, pb.DepositResponse)

    async def Withdraw(self, request: pb.WithdrawRequest, context: _Context) -> pb.WithdrawResponse:
        packed = self._packed_here("withdraw", request)
        if packed is not None:
            return await self._submit_packed(packed, context, pb.WithdrawResponse)
        command = requests.withdraw(request)
        return await self._submit(command, request, context, pb.WithdrawResponse)

    async def Transfer(self, request: pb.TransferRequest, context: _Context) -> pb.TransferResponse:
        packed = self._packed_here("transfer", request)
        if packed is not None:
            # One shard owns both accounts: never a saga, completed once committed.
            fast = await self._submit_packed(packed, context, pb.TransferResponse)
            fast.status = pb.TRANSFER_STATUS_COMPLETED
            return fast
        command = requests.transfer(request)
        reply = await self._submit(command, request, context, pb.TransferResponse)
        committer = self.committer
        if committer is None or committer.misrouted(command) is not None:
            return reply  # forwarded: the owner's answer, its status included
        if not committer.crosses_shards(command):
            reply.status = pb.TRANSFER_STATUS_COMPLETED
            return reply
        # A saga (docs/design.md, decision 13): the debit is recorded; wait for its end, leaving
        # a margin of the deadline to answer in.
        remaining = context.time_remaining()
        seconds = self._transfer_wait
        if remaining is not None:
            seconds = min(seconds, remaining * 0.8 - 0.05)
        state, reason = await committer.transfer_state(command.command_id, seconds)
        if state == REFUNDED:
            await _abort(
                context,
                grpc.StatusCode.FAILED_PRECONDITION,
                f"transfer {command.command_id!r} was refused by the shard of account "
                f"{command.to_account_id!r} ({reason}); the money was refunded to account "
                f"{command.from_account_id!r}",
            )
        reply.status = (
            pb.TRANSFER_STATUS_COMPLETED if state == COMPLETED else pb.TRANSFER_STATUS_PENDING
        )
        return reply

    async def CloseAccount(
        self, request: pb.CloseAccountRequest, context: _Context
    ) -> pb.CloseAccountResponse:
        packed = self._packed_here("close_account", request)
        if packed is not None:
            return await self._submit_packed(packed, context, pb.CloseAccountResponse)
        command = requests.close_account(request)
        return await self._submit(command, request, context, pb.CloseAccountResponse)

    async def ExecuteBatch(
        self, request: pb.ExecuteBatchRequest, context: _Context
    ) -> pb.ExecuteBatchResponse:
        """Checks every command as its unary call would, then hands those that pass to the
        committer as one submission (one pipe message, one transaction)."""
        count = len(request.commands)
        if not 1 <= count <= MAX_BATCH_COMMANDS:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                f"commands holds {count} commands: send 1 to {MAX_BATCH_COMMANDS:,} per call "
                "(split a larger batch; an atomic one cannot be split)",
            )
        committer = self.committer
        if committer is None:
            await _abort(context, grpc.StatusCode.UNAVAILABLE, _REBUILDING)
        forwarder = self.forwarder
        # Commands are needed as objects only to route them between shards.
        sharded = forwarder is not None or not committer.owns_every_account
        verdicts: list[Outcome | None] = [None] * count
        admission = batch_admission.admitted(request.commands, datetime.now(UTC), self._max_skew)
        for index, refusal in admission.refusals.items():
            verdicts[index] = refusal
        admitted, positions = admission.packed, admission.positions
        commands: list[Command] = []
        if sharded:
            admitted, kept = [], []
            for index, packed in zip(admission.positions, admission.packed, strict=True):
                command = unpack_command(packed)
                misrouted = committer.misrouted(command)
                # A command another shard owns is forwarded there (below), not refused.
                if misrouted is not None and (
                    forwarder is None or forwarder.router.is_local(command)
                ):
                    verdicts[index] = misrouted
                    continue
                commands.append(command)
                admitted.append(packed)
                kept.append(index)
            positions = kept
        if request.atomic and len(admitted) < count:
            failed = next(i for i, verdict in enumerate(verdicts) if verdict is not None)
            not_applied = NotApplied(
                f"not applied: command {failed} of the atomic batch failed (its result says "
                "why), so none of the batch's commands was applied"
            )
            verdicts = [not_applied if v is None else v for v in verdicts]
        elif admitted:
            if forwarder is not None:
                by_position = dict(zip(positions, commands, strict=True))
                try:
                    plan = await forwarder.plan_batch(by_position, request.atomic, context)
                    misrouted_here = any(isinstance(v, Misrouted) for v in verdicts)
                    if len(plan.foreign) == 1 and not plan.local and not misrouted_here:
                        # All of it is another shard's: its answer is this call's, unchanged.
                        (owner,) = plan.foreign
                        reply = pb.ExecuteBatchResponse
                        return await forwarder.call(owner, "ExecuteBatch", request, reply, context)
                except Exception as error:
                    await self._refuse(context, error)
                if plan.foreign:

                    async def decide_here(here: list[int]) -> list[Verdict]:
                        local = [pack_command(by_position[p]) for p in here]
                        return await committer.submit_packed(local, atomic=False)

                    split = await forwarder.split_batch(plan, request, decide_here, context)
                    for index, outcome in split.items():
                        verdicts[index] = outcome
                    return _batch_response(verdicts)
            try:
                decided = await committer.submit_packed(admitted, atomic=request.atomic)
            except Exception as error:
                await self._refuse(context, error)
            if len(decided) == count:
                return _batch_response(decided)
            for index, verdict in zip(positions, decided, strict=True):
                verdicts[index] = verdict
        return _batch_response(verdicts)

    async def EraseOwner(
        self, request: pb.EraseOwnerRequest, context: _Context
    ) -> pb.EraseOwnerResponse:
        command = EraseOwner(command_id=request.command_id, account_id=request.account_id)
        return await self._submit(command, request, context, pb.EraseOwnerResponse)

    async def _submit(
        self, command: Command, request: object, context: _Context, reply: type[_Reply]
    ) -> _Reply:
        """The reply to `command` (parsed from `request`) once committed, here or by the shard
        that owns it; a refusal aborts the call with its status (the owner's, unchanged).

        Malformed fields are refused here, so that they never cross the pipe to the writer (which
        trusts the pipe for movements and checks other commands again through `decide`)."""
        try:
            # Here, not in the writer: the clock an id is checked against is this process's.
            require_command_id(command.command_id, datetime.now(UTC), self._max_skew)
            require_fields(command)
            if self.committer is None:
                raise NotServing(_REBUILDING)
            if self.forwarder is not None:
                owner = await self.forwarder.owner_elsewhere(command, context)
                if owner is not None:
                    method = reply.__name__.removesuffix("Response")
                    return await self.forwarder.call(owner, method, request, reply, context)
            ack = await self.committer.submit(command)
        except Exception as error:
            await self._refuse(context, error)
        return reply(version=ack.version, consistency_token=ack.token)

    def _packed_here(self, kind: str, request: object) -> PackedCommand | None:
        """A unary request packed straight from its fields (`batch_admission`) when this one
        shard commits it and it passes every check; None: `_submit` checks and routes it."""
        committer = self.committer
        if committer is None or self.forwarder is not None or not committer.owns_every_account:
            return None
        return batch_admission.packed_request(kind, request, self._horizon.now())

    async def _submit_packed(
        self, packed: PackedCommand, context: _Context, reply: type[_Reply]
    ) -> _Reply:
        """`_submit` of a command `_packed_here` packed: committed here, nothing to route."""
        committer = self.committer
        try:
            if committer is None:
                raise NotServing(_REBUILDING)
            (verdict,) = await committer.submit_packed([packed], atomic=False)
            if isinstance(verdict, BaseException):
                raise verdict
        except Exception as error:
            await self._refuse(context, error)
        return reply(version=verdict.version, consistency_token=verdict.token)

    async def _refuse(self, context: _Context, error: Exception) -> NoReturn:
        if isinstance(error, Overloaded | ForwardsFull):
            # gRPC's standard hint, which clients' retry policies honour, beside the message's.
            context.set_trailing_metadata((("grpc-retry-pushback-ms", str(error.retry_after_ms)),))
        elif isinstance(error, OwnerAnswered):
            context.set_trailing_metadata(error.trailers)
        await _abort(context, *_status_of(error))


_REBUILDING = "the command server is still rebuilding its state from the event store; retry"


def _batch_response(verdicts: Sequence[Outcome | None]) -> pb.ExecuteBatchResponse:
    """One result per verdict (those of other shards as they answered), and the token covering
    every successful command (other shards' tokens merged in)."""
    response = pb.ExecuteBatchResponse()
    add = response.results.add
    # The union of the tokens, from their positions: the latest offset per partition.
    union: dict[int, int] = {}
    latest = union.get
    acknowledged = False
    for verdict in verdicts:
        if isinstance(verdict, Ack):  # the many: one message each, the positions merged inline
            add(version=verdict.version, consistency_token=verdict.token)
            acknowledged = True
            positions = (
                verdict.positions or ConsistencyToken.decode(verdict.token).positions.items()
            )
            for partition, offset in positions:
                if offset > latest(partition, -1):
                    union[partition] = offset
        elif isinstance(verdict, pb.CommandResult):
            # Another shard's answer: its token decoded to merge its positions.
            add().CopyFrom(verdict)
            if verdict.code == 0 and verdict.consistency_token:
                acknowledged = True
                token = ConsistencyToken.decode(verdict.consistency_token)
                _merge_positions(union, token.positions.items())
        else:
            code, message = _status_of(verdict or WriterFailed("no verdict for the command"))
            add(code=code.value[0], message=message)
    if acknowledged:
        response.consistency_token = encode_positions(union)
    return response


def _merge_positions(union: dict[int, int], positions: Iterable[tuple[int, int]]) -> None:
    """Keep in `union` the latest offset per partition of `positions` and its own."""
    for partition, offset in positions:
        if offset > union.get(partition, -1):
            union[partition] = offset


async def _abort(context: _Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # grpc.aio raises; this keeps mypy honest
