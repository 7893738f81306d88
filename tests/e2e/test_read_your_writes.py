"""Read-your-writes from outside: the command server, the projector and the query server as
real processes, driven by gRPC clients as an application would drive them (docs/design.md,
decision 9)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

import grpc
import pytest

from ledger.command_ids import new_command_id
from ledger.consistency import ConsistencyToken
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import commands_pb2_grpc as cmd_grpc
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.e2e.running_ledger import PROMPTLY_S, RunningLedger
from tests.integration.query_server.read_model_writer import next_update, unique_id

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class EndToEnd:
    commands: cmd_grpc.CommandServiceAsyncStub
    queries: pb_grpc.QueryServiceAsyncStub


@pytest.fixture(scope="module")
async def end_to_end(ledger: RunningLedger) -> AsyncIterator[EndToEnd]:
    async with (
        grpc.aio.insecure_channel(ledger.command_server.address) as command_channel,
        grpc.aio.insecure_channel(ledger.query_server.address) as query_channel,
    ):
        yield EndToEnd(
            cmd_grpc.CommandServiceStub(command_channel),
            pb_grpc.QueryServiceStub(query_channel),
        )


async def _open_account(end_to_end: EndToEnd, currency: str = "EUR") -> tuple[str, str]:
    account = unique_id("e2e")
    opened = await end_to_end.commands.OpenAccount(
        cmd.OpenAccountRequest(
            command_id=new_command_id(), account_id=account, currency=currency, owner="E2E"
        )
    )
    return account, opened.consistency_token


async def test_reads_its_own_writes_every_time(end_to_end: EndToEnd) -> None:
    account, token = await _open_account(end_to_end)
    opened = await end_to_end.queries.GetAccount(
        pb.GetAccountRequest(account_id=account, consistency_token=token), timeout=10
    )
    assert (opened.account.version, opened.account.balance) == (1, "0.00")
    balance = Decimal(0)
    for n in range(100):
        if n % 3 == 2:
            reply: Any = await end_to_end.commands.Withdraw(
                cmd.WithdrawRequest(command_id=new_command_id(), account_id=account, amount="1.25")
            )
            balance -= Decimal("1.25")
        else:
            reply = await end_to_end.commands.Deposit(
                cmd.DepositRequest(command_id=new_command_id(), account_id=account, amount="2.50")
            )
            balance += Decimal("2.50")
        answer = await end_to_end.queries.GetAccount(
            pb.GetAccountRequest(account_id=account, consistency_token=reply.consistency_token),
            timeout=10,
        )
        assert (answer.account.version, answer.account.balance) == (reply.version, f"{balance}")
        covered = ConsistencyToken.decode(answer.freshness.consistency_token).positions
        assert ConsistencyToken.decode(reply.consistency_token).covered_by(covered)
    history = await end_to_end.queries.ListTransactions(
        pb.ListTransactionsRequest(account_id=account, page_size=1000)
    )
    assert [t.version for t in history.transactions] == list(range(2, 102))


async def test_watch_follows_every_command_on_the_account(end_to_end: EndToEnd) -> None:
    account, token = await _open_account(end_to_end)
    other, _ = await _open_account(end_to_end)
    stream = end_to_end.queries.WatchAccount(
        pb.WatchAccountRequest(account_id=account, consistency_token=token)
    )
    first = await next_update(stream)
    assert (first.account.version, first.account.balance) == (1, "0.00")

    commands = end_to_end.commands
    await commands.Deposit(
        cmd.DepositRequest(command_id=new_command_id(), account_id=account, amount="100")
    )
    await commands.Withdraw(
        cmd.WithdrawRequest(command_id=new_command_id(), account_id=account, amount="30")
    )
    await commands.Deposit(
        cmd.DepositRequest(command_id=new_command_id(), account_id=other, amount="1")
    )
    await commands.Transfer(
        cmd.TransferRequest(
            command_id=new_command_id(), from_account_id=account, to_account_id=other, amount="20"
        )
    )
    await commands.Deposit(
        cmd.DepositRequest(command_id=new_command_id(), account_id=account, amount="0.05")
    )
    await commands.Withdraw(
        cmd.WithdrawRequest(command_id=new_command_id(), account_id=account, amount="50.05")
    )
    await commands.CloseAccount(
        cmd.CloseAccountRequest(command_id=new_command_id(), account_id=account)
    )

    updates = []
    while (message := await asyncio.wait_for(stream.read(), PROMPTLY_S)) is not grpc.aio.EOF:
        assert isinstance(message, pb.WatchAccountResponse)
        updates.append(message)
    assert [
        (u.account.version, u.account.balance, u.transaction.kind, u.account.status)
        for u in updates
    ] == [
        (2, "100.00", pb.TRANSACTION_KIND_DEPOSIT, pb.ACCOUNT_STATUS_OPEN),
        (3, "70.00", pb.TRANSACTION_KIND_WITHDRAWAL, pb.ACCOUNT_STATUS_OPEN),
        (4, "50.00", pb.TRANSACTION_KIND_TRANSFER_OUT, pb.ACCOUNT_STATUS_OPEN),
        (5, "50.05", pb.TRANSACTION_KIND_DEPOSIT, pb.ACCOUNT_STATUS_OPEN),
        (6, "0.00", pb.TRANSACTION_KIND_WITHDRAWAL, pb.ACCOUNT_STATUS_OPEN),
        (7, "0.00", pb.TRANSACTION_KIND_UNSPECIFIED, pb.ACCOUNT_STATUS_CLOSED),
    ]
    assert updates[2].transaction.counterparty_account_id == other
