"""ledger.v1.CommandService: translates requests into domain commands and outcomes into replies."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import NoReturn, TypeVar

import grpc

from command_server.event_store import AppendFailed
from command_server.group_commit import GroupCommitter, Misrouted, Overloaded
from command_server.writer.protocol import CommandIdReused, NotServing, WriterFailed
from ledger.domain.commands import (
    CloseAccount,
    Command,
    Deposit,
    EraseOwner,
    OpenAccount,
    Transfer,
    Withdraw,
)
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
    (Misrouted, grpc.StatusCode.UNAVAILABLE, "{}"),
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


def _status_of(error: Exception) -> tuple[grpc.StatusCode, str]:
    """The status and message that answer a command which ended in `error`."""
    if isinstance(error, Rejection):
        return _STATUS_OF_REJECTION[error.kind], error.message
    for kind, code, message in _STATUS_OF:
        if isinstance(error, kind):
            if kind is WriterFailed:
                log.error("the writer failed a command: %s", error)
            return code, message.format(error)
    log.error("bug answering a command", exc_info=error)
    return grpc.StatusCode.INTERNAL, "internal error in the command server (see its log)"


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
    def __init__(self, command_id_max_skew: timedelta = timedelta(seconds=60)) -> None:
        # Set by the composition root once the write model is rebuilt; until then: UNAVAILABLE.
        self.committer: GroupCommitter | None = None
        self._max_skew = command_id_max_skew

    async def OpenAccount(
        self, request: pb.OpenAccountRequest, context: _Context
    ) -> pb.OpenAccountResponse:
        command = OpenAccount(
            command_id=request.command_id,
            account_id=request.account_id,
            currency=request.currency,
            owner=request.owner,
        )
        return await self._submit(command, context, pb.OpenAccountResponse)

    async def Deposit(self, request: pb.DepositRequest, context: _Context) -> pb.DepositResponse:
        return await self._submit(_movement(Deposit, request), context, pb.DepositResponse)

    async def Withdraw(self, request: pb.WithdrawRequest, context: _Context) -> pb.WithdrawResponse:
        return await self._submit(_movement(Withdraw, request), context, pb.WithdrawResponse)

    async def Transfer(self, request: pb.TransferRequest, context: _Context) -> pb.TransferResponse:
        command = Transfer(
            command_id=request.command_id,
            from_account_id=request.from_account_id,
            to_account_id=request.to_account_id,
            amount=request.amount,
            expected_version=_expected_version(request),
        )
        return await self._submit(command, context, pb.TransferResponse)

    async def CloseAccount(
        self, request: pb.CloseAccountRequest, context: _Context
    ) -> pb.CloseAccountResponse:
        command = CloseAccount(
            command_id=request.command_id,
            account_id=request.account_id,
            expected_version=_expected_version(request),
        )
        return await self._submit(command, context, pb.CloseAccountResponse)

    async def EraseOwner(
        self, request: pb.EraseOwnerRequest, context: _Context
    ) -> pb.EraseOwnerResponse:
        command = EraseOwner(command_id=request.command_id, account_id=request.account_id)
        return await self._submit(command, context, pb.EraseOwnerResponse)

    async def _submit(self, command: Command, context: _Context, reply: type[_Reply]) -> _Reply:
        """The reply to `command` once committed; a refusal aborts the call with its status.

        Malformed fields are refused here, so that they never cross the pipe to the writer
        (which checks them again: `decide` runs the same `require_fields`)."""
        try:
            # Here, not in the writer: the clock an id is checked against is this process's.
            require_command_id(command.command_id, datetime.now(UTC), self._max_skew)
            require_fields(command)
            if self.committer is None:
                raise NotServing(
                    "the command server is still rebuilding its state from the event store; retry"
                )
            ack = await self.committer.submit(command)
        except Exception as error:
            if isinstance(error, Overloaded):
                # gRPC's standard hint, which clients' retry policies honour, beside the message's.
                context.set_trailing_metadata(
                    (("grpc-retry-pushback-ms", str(error.retry_after_ms)),)
                )
            await _abort(context, *_status_of(error))
        return reply(version=ack.version, consistency_token=ack.token)


def _movement(
    kind: type[Deposit | Withdraw], request: pb.DepositRequest | pb.WithdrawRequest
) -> Deposit | Withdraw:
    return kind(
        command_id=request.command_id,
        account_id=request.account_id,
        amount=request.amount,
        expected_version=_expected_version(request),
    )


def _expected_version(
    request: pb.DepositRequest | pb.WithdrawRequest | pb.TransferRequest | pb.CloseAccountRequest,
) -> int | None:
    return request.expected_version if request.HasField("expected_version") else None


async def _abort(context: _Context, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # grpc.aio raises; this keeps mypy honest
