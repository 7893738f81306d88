"""Typed results: dataclasses with `Decimal` money and aware `datetime`s, made from the messages."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal
from typing import Generic, TypeVar

import grpc
from google.protobuf.timestamp_pb2 import Timestamp

from ledger_client.money import parse_amount
from ledger_client.v1 import commands_pb2 as cpb
from ledger_client.v1 import queries_pb2 as pb

T = TypeVar("T")


class AccountStatus(enum.Enum):
    OPEN = pb.ACCOUNT_STATUS_OPEN
    CLOSED = pb.ACCOUNT_STATUS_CLOSED


class TransactionKind(enum.Enum):
    DEPOSIT = pb.TRANSACTION_KIND_DEPOSIT
    WITHDRAWAL = pb.TRANSACTION_KIND_WITHDRAWAL
    TRANSFER_OUT = pb.TRANSACTION_KIND_TRANSFER_OUT
    TRANSFER_IN = pb.TRANSACTION_KIND_TRANSFER_IN
    TRANSFER_REFUND = pb.TRANSACTION_KIND_TRANSFER_REFUND


@dataclass(frozen=True)
class CommandResult:
    """An accepted command: the account's version after it, and the token to read it back."""

    command_id: str
    version: int
    consistency_token: str


@dataclass(frozen=True)
class BatchCommandResult:
    """What became of one command of a batch: `code` OK with its version and token, or the
    status its unary call would have failed with, and why."""

    command_id: str
    code: grpc.StatusCode
    message: str
    version: int
    consistency_token: str


@dataclass(frozen=True)
class BatchResult:
    """One result per command, in order, and a token covering every command that succeeded."""

    results: list[BatchCommandResult]
    consistency_token: str


_STATUS_CODES = {code.value[0]: code for code in grpc.StatusCode}


def batch_result(request: cpb.ExecuteBatchRequest, reply: cpb.ExecuteBatchResponse) -> BatchResult:
    ids = [_command_id(command) for command in request.commands]
    results = [
        BatchCommandResult(
            command_id,
            _STATUS_CODES.get(result.code, grpc.StatusCode.UNKNOWN),
            result.message,
            result.version,
            result.consistency_token,
        )
        for command_id, result in zip(ids, reply.results, strict=True)
    ]
    return BatchResult(results, reply.consistency_token)


def _command_id(command: cpb.Command) -> str:
    kind = command.WhichOneof("command")
    return "" if kind is None else str(getattr(command, kind).command_id)


@dataclass(frozen=True)
class Freshness:
    """The event-store position an answer reflects, and when the read model reached it."""

    consistency_token: str
    as_of: datetime | None


@dataclass(frozen=True)
class Account:
    account_id: str
    currency: str
    owner: str
    status: AccountStatus
    balance: Decimal
    version: int
    opened_at: datetime | None
    updated_at: datetime | None
    freshness: Freshness


@dataclass(frozen=True)
class Transaction:
    event_id: str
    account_id: str
    kind: TransactionKind
    amount: Decimal
    currency: str
    balance_after: Decimal
    occurred_at: datetime | None
    counterparty_account_id: str
    transfer_id: str
    command_id: str
    version: int
    reference: str = ""
    memo: str = ""


@dataclass(frozen=True)
class BalanceAt:
    account_id: str
    currency: str
    balance: Decimal
    version: int
    freshness: Freshness


@dataclass(frozen=True)
class DailySummary:
    account_id: str
    day: date
    currency: str
    inflow: Decimal
    outflow: Decimal
    movement_count: int
    closing_balance: Decimal


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page of a listing; pass `next_page_token` (empty on the last page) for the next."""

    items: list[T]
    next_page_token: str
    freshness: Freshness


def timestamp(message: Timestamp, present: bool) -> datetime | None:
    return message.ToDatetime(tzinfo=UTC) if present else None


def to_timestamp(moment: datetime) -> Timestamp:
    if moment.tzinfo is None:
        raise ValueError("a naive datetime is ambiguous: give it a time zone (e.g. UTC)")
    message = Timestamp()
    message.FromDatetime(moment)
    return message


def freshness(message: pb.Freshness) -> Freshness:
    return Freshness(message.consistency_token, timestamp(message.as_of, message.HasField("as_of")))


def account(message: pb.Account, fresh: Freshness) -> Account:
    return Account(
        account_id=message.account_id,
        currency=message.currency,
        owner=message.owner,
        status=AccountStatus(message.status),
        balance=parse_amount(message.balance),
        version=message.version,
        opened_at=timestamp(message.opened_at, message.HasField("opened_at")),
        updated_at=timestamp(message.updated_at, message.HasField("updated_at")),
        freshness=fresh,
    )


def transaction(message: pb.Transaction) -> Transaction:
    return Transaction(
        event_id=message.event_id,
        account_id=message.account_id,
        kind=TransactionKind(message.kind),
        amount=parse_amount(message.amount),
        currency=message.currency,
        balance_after=parse_amount(message.balance_after),
        occurred_at=timestamp(message.occurred_at, message.HasField("occurred_at")),
        counterparty_account_id=message.counterparty_account_id,
        transfer_id=message.transfer_id,
        command_id=message.command_id,
        version=message.version,
        reference=message.reference,
        memo=message.memo,
    )


def daily_summary(message: pb.DailySummary) -> DailySummary:
    return DailySummary(
        account_id=message.account_id,
        day=date(message.day.year, message.day.month, message.day.day),
        currency=message.currency,
        inflow=parse_amount(message.inflow),
        outflow=parse_amount(message.outflow),
        movement_count=message.movement_count,
        closing_balance=parse_amount(message.closing_balance),
    )
