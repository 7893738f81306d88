"""Requests of ledger.v1.CommandService as the domain's commands: one translation per request
type, shared by the unary calls and ExecuteBatch."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from ledger.domain.commands import CloseAccount, Command, Deposit, OpenAccount, Transfer, Withdraw
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.v1 import commands_pb2 as pb


def open_account(request: pb.OpenAccountRequest) -> OpenAccount:
    return OpenAccount(
        command_id=request.command_id,
        account_id=request.account_id,
        currency=request.currency,
        owner=request.owner,
    )


def deposit(request: pb.DepositRequest) -> Deposit:
    return _movement(Deposit, request)


def withdraw(request: pb.WithdrawRequest) -> Withdraw:
    return _movement(Withdraw, request)


_Movement = TypeVar("_Movement", Deposit, Withdraw)


def _movement(kind: type[_Movement], request: pb.DepositRequest | pb.WithdrawRequest) -> _Movement:
    return kind(
        command_id=request.command_id,
        account_id=request.account_id,
        amount=request.amount,
        expected_version=_expected_version(request),
        reference=request.reference,
        memo=request.memo,
    )


def transfer(request: pb.TransferRequest) -> Transfer:
    return Transfer(
        command_id=request.command_id,
        from_account_id=request.from_account_id,
        to_account_id=request.to_account_id,
        amount=request.amount,
        expected_version=_expected_version(request),
        reference=request.reference,
        memo=request.memo,
    )


def close_account(request: pb.CloseAccountRequest) -> CloseAccount:
    return CloseAccount(
        command_id=request.command_id,
        account_id=request.account_id,
        expected_version=_expected_version(request),
    )


# The `Command` oneof's fields, each with its translation.
_OF_FIELD: dict[str, Callable[[Any], Command]] = {
    "open_account": open_account,
    "deposit": deposit,
    "withdraw": withdraw,
    "transfer": transfer,
    "close_account": close_account,
}


def command_of(message: pb.Command) -> Command:
    """The domain command a batch's `Command` holds; Rejection (INVALID) if it holds none."""
    kind = message.WhichOneof("command")
    if kind is None:
        raise Rejection(
            RejectionKind.INVALID,
            "the command holds no request: set one of open_account, deposit, withdraw, "
            "transfer or close_account",
        )
    return _OF_FIELD[kind](getattr(message, kind))


def _expected_version(
    request: pb.DepositRequest | pb.WithdrawRequest | pb.TransferRequest | pb.CloseAccountRequest,
) -> int | None:
    return request.expected_version if request.HasField("expected_version") else None
