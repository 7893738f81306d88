"""`LedgerClient`: the five commands and the queries over gRPC's sync channels, with safe retries.

Every command gets a fresh UUIDv7 command id (or the caller's), and every retry of it resends the
same request, so a command whose answer was lost is applied once. A `Session` also carries the
consistency tokens of its commands and reads into its next reads: it reads its own writes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Sequence
from datetime import date, datetime
from functools import partial
from pathlib import Path
from types import TracebackType
from typing import Protocol, Self, TypeVar

import grpc

from ledger_client import results as r
from ledger_client.command_ids import new_command_id
from ledger_client.credentials import secure_channel
from ledger_client.money import Amount, format_amount, parse_amount
from ledger_client.reads import ManyAccountReads
from ledger_client.retry import Retrier, RetryPolicy
from ledger_client.tokens import merge_tokens
from ledger_client.v1 import commands_pb2 as cpb
from ledger_client.v1 import commands_pb2_grpc as cgrpc
from ledger_client.v1 import queries_pb2 as qpb
from ledger_client.v1 import queries_pb2_grpc as qgrpc

T = TypeVar("T")


class _Accepted(Protocol):
    """What every command's reply holds."""

    @property
    def version(self) -> int: ...
    @property
    def consistency_token(self) -> str: ...


class LedgerClient(ManyAccountReads):
    """Commands and queries of one Ledger. Thread-safe; close it (or use `with`) when done."""

    def __init__(
        self,
        command_channel: grpc.Channel,
        query_channel: grpc.Channel,
        *,
        retry: RetryPolicy | Retrier | None = None,
    ) -> None:
        self._channels = (command_channel, query_channel)
        self._commands = cgrpc.CommandServiceStub(command_channel)
        self._queries = qgrpc.QueryServiceStub(query_channel)
        self._retrier = retry if isinstance(retry, Retrier) else Retrier(retry or RetryPolicy())

    @classmethod
    def connect(
        cls,
        command_address: str = "127.0.0.1:50051",
        query_address: str = "127.0.0.1:50052",
        *,
        ca_file: str | Path | None = None,
        token: str | None = None,
        token_file: str | Path | None = None,
        retry: RetryPolicy | None = None,
    ) -> LedgerClient:
        """A client of the servers at these addresses over TLS, with a bearer token
        (`make run`: ca_file=".data/credentials/ca.pem", token_file=".../writer.token")."""
        channels = [
            secure_channel(address, ca_file=ca_file, token=token, token_file=token_file)
            for address in (command_address, query_address)
        ]
        return cls(channels[0], channels[1], retry=retry)

    def session(self) -> Session:
        """A view of this client whose reads include everything it wrote and read before."""
        return Session(self)

    def close(self) -> None:
        for channel in self._channels:
            channel.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # Hooks a Session fills in: the token its reads wait for, and the tokens it learns.
    def _read_token(self, explicit: str | None) -> str:
        return explicit or ""

    def _saw(self, token: str) -> None:
        pass

    # Commands.

    def _command(
        self,
        method: Callable[..., _Accepted],
        make_request: Callable[..., object],
        command_id: str | None,
        timeout: float | None,
    ) -> r.CommandResult:
        command_id = command_id or new_command_id()
        # One request for every attempt: the retries carry the same command id.
        request = make_request(command_id=command_id)
        reply = self._retrier.call(
            lambda seconds: method(request, timeout=seconds), timeout=timeout, command_id=command_id
        )
        self._saw(reply.consistency_token)
        return r.CommandResult(command_id, reply.version, reply.consistency_token)

    # Every command takes `command_id` (default: a fresh UUIDv7; pass your own only to resend a
    # command, e.g. after a crash) and `timeout`, the call's overall deadline in seconds. Money
    # movements also take `reference` (your id of it, <= 64 characters; list_transactions
    # filters by it) and `memo` (a note, <= 128), kept on their events.

    def open_account(
        self,
        account_id: str,
        currency: str,
        owner: str = "",
        *,
        command_id: str | None = None,
        timeout: float | None = None,
    ) -> r.CommandResult:
        request = partial(
            cpb.OpenAccountRequest, account_id=account_id, currency=currency, owner=owner
        )
        return self._command(self._commands.OpenAccount, request, command_id, timeout)

    def deposit(
        self,
        account_id: str,
        amount: Amount,
        *,
        expected_version: int | None = None,
        reference: str = "",
        memo: str = "",
        command_id: str | None = None,
        timeout: float | None = None,
    ) -> r.CommandResult:
        request = partial(
            cpb.DepositRequest,
            account_id=account_id,
            amount=format_amount(amount),
            expected_version=expected_version,
            reference=reference,
            memo=memo,
        )
        return self._command(self._commands.Deposit, request, command_id, timeout)

    def withdraw(
        self,
        account_id: str,
        amount: Amount,
        *,
        expected_version: int | None = None,
        reference: str = "",
        memo: str = "",
        command_id: str | None = None,
        timeout: float | None = None,
    ) -> r.CommandResult:
        request = partial(
            cpb.WithdrawRequest,
            account_id=account_id,
            amount=format_amount(amount),
            expected_version=expected_version,
            reference=reference,
            memo=memo,
        )
        return self._command(self._commands.Withdraw, request, command_id, timeout)

    def transfer(
        self,
        from_account_id: str,
        to_account_id: str,
        amount: Amount,
        *,
        expected_version: int | None = None,
        reference: str = "",
        memo: str = "",
        command_id: str | None = None,
        timeout: float | None = None,
    ) -> r.CommandResult:
        """Moves `amount`; the command id is also the transfer's id on both accounts."""
        request = partial(
            cpb.TransferRequest,
            from_account_id=from_account_id,
            to_account_id=to_account_id,
            amount=format_amount(amount),
            expected_version=expected_version,
            reference=reference,
            memo=memo,
        )
        return self._command(self._commands.Transfer, request, command_id, timeout)

    def close_account(
        self,
        account_id: str,
        *,
        expected_version: int | None = None,
        command_id: str | None = None,
        timeout: float | None = None,
    ) -> r.CommandResult:
        request = partial(
            cpb.CloseAccountRequest, account_id=account_id, expected_version=expected_version
        )
        return self._command(self._commands.CloseAccount, request, command_id, timeout)

    def execute_batch(
        self,
        commands: Sequence[cpb.Command],
        *,
        atomic: bool = False,
        timeout: float | None = None,
    ) -> r.BatchResult:
        """Up to 8,000 commands in one call (`cpb.Command(deposit=cpb.DepositRequest(...))`), one
        result each, in order; `atomic`: all applied or none. A command without a command id gets
        a fresh one, the same for every retry of the call. A result's own failure (its `code`)
        raises nothing; only a failure of the whole call raises LedgerError."""
        request = cpb.ExecuteBatchRequest(commands=commands, atomic=atomic)
        for command in request.commands:
            kind = command.WhichOneof("command")
            if kind is not None and not getattr(command, kind).command_id:
                getattr(command, kind).command_id = new_command_id()
        reply = self._retrier.call(
            lambda seconds: self._commands.ExecuteBatch(request, timeout=seconds), timeout=timeout
        )
        self._saw(reply.consistency_token)
        return r.batch_result(request, reply)

    # Queries: `consistency_token` makes the server wait (within the deadline) until the read
    # model includes that position; a Session passes its own.

    def _query(self, method: Callable[..., T], request: object, timeout: float | None) -> T:
        return self._retrier.call(lambda seconds: method(request, timeout=seconds), timeout=timeout)

    def get_account(
        self, account_id: str, *, consistency_token: str | None = None, timeout: float | None = None
    ) -> r.Account:
        request = qpb.GetAccountRequest(
            account_id=account_id, consistency_token=self._read_token(consistency_token)
        )
        reply = self._query(self._queries.GetAccount, request, timeout)
        self._saw(reply.freshness.consistency_token)
        return r.account(reply.account, r.freshness(reply.freshness))

    def list_accounts(
        self,
        *,
        status: r.AccountStatus | None = None,
        currency: str = "",
        page_size: int = 0,
        page_token: str = "",
        consistency_token: str | None = None,
        timeout: float | None = None,
    ) -> r.Page[r.Account]:
        request = qpb.ListAccountsRequest(
            page_size=page_size,
            page_token=page_token,
            status=status.value if status else qpb.ACCOUNT_STATUS_UNSPECIFIED,
            currency=currency,
            consistency_token=self._read_token(consistency_token),
        )
        reply = self._query(self._queries.ListAccounts, request, timeout)
        self._saw(reply.freshness.consistency_token)
        fresh = r.freshness(reply.freshness)
        accounts = [r.account(item, fresh) for item in reply.accounts]
        return r.Page(accounts, reply.next_page_token, fresh)

    def list_transactions(
        self,
        account_id: str,
        *,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        newest_first: bool = False,
        reference: str = "",
        page_size: int = 0,
        page_token: str = "",
        consistency_token: str | None = None,
        timeout: float | None = None,
    ) -> r.Page[r.Transaction]:
        request = qpb.ListTransactionsRequest(
            account_id=account_id,
            start_time=r.to_timestamp(start_time) if start_time else None,
            end_time=r.to_timestamp(end_time) if end_time else None,
            page_size=page_size,
            page_token=page_token,
            order=qpb.SORT_ORDER_DESCENDING if newest_first else qpb.SORT_ORDER_ASCENDING,
            reference=reference,
            consistency_token=self._read_token(consistency_token),
        )
        reply = self._query(self._queries.ListTransactions, request, timeout)
        self._saw(reply.freshness.consistency_token)
        items = [r.transaction(item) for item in reply.transactions]
        return r.Page(items, reply.next_page_token, r.freshness(reply.freshness))

    def get_balance_at(
        self,
        account_id: str,
        at: datetime,
        *,
        consistency_token: str | None = None,
        timeout: float | None = None,
    ) -> r.BalanceAt:
        request = qpb.GetBalanceAtRequest(
            account_id=account_id,
            at=r.to_timestamp(at),
            consistency_token=self._read_token(consistency_token),
        )
        reply = self._query(self._queries.GetBalanceAt, request, timeout)
        self._saw(reply.freshness.consistency_token)
        balance = parse_amount(reply.balance)
        fresh = r.freshness(reply.freshness)
        return r.BalanceAt(reply.account_id, reply.currency, balance, reply.version, fresh)

    def get_daily_summaries(
        self,
        first_day: date,
        last_day: date,
        *,
        account_id: str = "",
        page_size: int = 0,
        page_token: str = "",
        consistency_token: str | None = None,
        timeout: float | None = None,
    ) -> r.Page[r.DailySummary]:
        request = qpb.GetDailySummariesRequest(
            account_id=account_id,
            first_day=qpb.Date(year=first_day.year, month=first_day.month, day=first_day.day),
            last_day=qpb.Date(year=last_day.year, month=last_day.month, day=last_day.day),
            page_size=page_size,
            page_token=page_token,
            consistency_token=self._read_token(consistency_token),
        )
        reply = self._query(self._queries.GetDailySummaries, request, timeout)
        self._saw(reply.freshness.consistency_token)
        items = [r.daily_summary(item) for item in reply.summaries]
        return r.Page(items, reply.next_page_token, r.freshness(reply.freshness))

    def watch_account(
        self,
        account_id: str,
        *,
        consistency_token: str | None = None,
        timeout: float | None = None,
    ) -> Generator[tuple[r.Account, r.Transaction | None], None, None]:
        """The account's state, then one (account, movement) per change until it is closed, the
        caller stops iterating or `timeout` (default: none) passes. Not retried: a broken stream
        ends with its grpc.RpcError, and the caller decides where to resume."""
        request = qpb.WatchAccountRequest(
            account_id=account_id, consistency_token=self._read_token(consistency_token)
        )
        stream = self._queries.WatchAccount(request, timeout=timeout)
        try:
            for reply in stream:
                self._saw(reply.freshness.consistency_token)
                moved = r.transaction(reply.transaction) if reply.HasField("transaction") else None
                yield r.account(reply.account, r.freshness(reply.freshness)), moved
        finally:
            stream.cancel()


class Session(LedgerClient):
    """A client that remembers the positions of what it wrote and read and makes every read wait
    for them: read-your-writes (and monotonic reads) without passing tokens by hand."""

    def __init__(self, client: LedgerClient) -> None:
        # Shares the client's channels and retries; closing a session closes nothing.
        self.__dict__.update(client.__dict__)
        self._lock = threading.Lock()
        self.consistency_token = ""
        """Covers every command and read of this session so far ("" before the first)."""

    def close(self) -> None:
        pass

    def _read_token(self, explicit: str | None) -> str:
        with self._lock:
            return (
                merge_tokens(self.consistency_token, explicit)
                if explicit
                else self.consistency_token
            )

    def _saw(self, token: str) -> None:
        if token:
            with self._lock:
                self.consistency_token = merge_tokens(self.consistency_token, token)
