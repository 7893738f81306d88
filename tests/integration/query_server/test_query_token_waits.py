"""Reads with a consistency token ahead of the read model wait for the projector (docs/design.md,
decision 9), up to the caller's deadline or the server's cap."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable
from datetime import timedelta
from typing import Any

import grpc
import pytest

from ledger.consistency import ConsistencyToken
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.integration.query_server.read_model_writer import (
    PROMPTLY_S,
    T0,
    ReadModelWriter,
    failure_of,
    next_update,
    timestamp,
    unique_id,
)

pytestmark = pytest.mark.integration


async def test_a_token_ahead_of_the_read_model_waits_for_the_projector(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    account = unique_id("ryw")
    await writer.open(account, partition=2)
    # The token of the deposit below, two events ahead of the read model.
    ahead = writer.token_of_next(2).positions[2] + 1
    token = ConsistencyToken({**writer.offsets, 2: ahead}).encode()
    day = pb.Date(year=T0.year, month=T0.month, day=T0.day)
    calls: dict[str, Awaitable[Any]] = {
        "GetAccount": client.GetAccount(
            pb.GetAccountRequest(account_id=account, consistency_token=token), timeout=20
        ),
        "ListAccounts": client.ListAccounts(
            pb.ListAccountsRequest(consistency_token=token, currency="USD"), timeout=20
        ),
        "ListTransactions": client.ListTransactions(
            pb.ListTransactionsRequest(account_id=account, consistency_token=token), timeout=20
        ),
        "GetBalanceAt": client.GetBalanceAt(
            pb.GetBalanceAtRequest(
                account_id=account, at=timestamp(T0 + timedelta(days=1)), consistency_token=token
            ),
            timeout=20,
        ),
        "GetDailySummaries": client.GetDailySummaries(
            pb.GetDailySummariesRequest(
                account_id=account, first_day=day, last_day=day, consistency_token=token
            ),
            timeout=20,
        ),
        "GetProjectionStatus": client.GetProjectionStatus(
            pb.GetProjectionStatusRequest(consistency_token=token), timeout=20
        ),
    }
    pending = {name: asyncio.ensure_future(call) for name, call in calls.items()}
    # One event short of the token: every call must still be waiting.
    await writer.touch(2)
    done, _ = await asyncio.wait(pending.values(), timeout=0.5)
    assert not done, "answered before the read model covered the token"
    await writer.move(account, "DEPOSIT", "7.00", at=T0 + timedelta(minutes=5))
    answers = {name: await asyncio.wait_for(call, PROMPTLY_S) for name, call in pending.items()}

    account_answer = answers["GetAccount"]
    assert isinstance(account_answer, pb.GetAccountResponse)
    assert account_answer.account.balance == "7.00"
    assert isinstance(answers["ListTransactions"], pb.ListTransactionsResponse)
    assert [t.amount for t in answers["ListTransactions"].transactions] == ["7.00"]
    assert isinstance(answers["GetBalanceAt"], pb.GetBalanceAtResponse)
    assert answers["GetBalanceAt"].balance == "7.00"
    assert isinstance(answers["GetDailySummaries"], pb.GetDailySummariesResponse)
    assert [s.inflow for s in answers["GetDailySummaries"].summaries] == ["7.00"]
    for answer in answers.values():
        freshness = answer.freshness
        covered = ConsistencyToken.decode(freshness.consistency_token).positions
        assert ConsistencyToken.decode(token).covered_by(covered)


async def test_a_token_never_covered_fails_with_deadline_exceeded(
    client: pb_grpc.QueryServiceAsyncStub,
) -> None:
    token = ConsistencyToken.at(0, 10**12).encode()
    started = time.monotonic()
    code, _ = await failure_of(
        client.GetAccount(pb.GetAccountRequest(account_id="a", consistency_token=token), timeout=1)
    )
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert time.monotonic() - started < 5
    # Without a deadline the server's own cap applies (1 s here, see conftest.py), explained.
    code, details = await failure_of(
        client.GetAccount(pb.GetAccountRequest(account_id="a", consistency_token=token))
    )
    assert code == grpc.StatusCode.DEADLINE_EXCEEDED
    assert "did not reach the consistency token" in details
    assert "partition 0" in details


async def test_watch_account_from_a_consistency_token(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    account = unique_id("watch-token")
    await writer.open(account, partition=0)
    token = writer.token_of_next(0).merge(ConsistencyToken(writer.offsets)).encode()
    stream = client.WatchAccount(
        pb.WatchAccountRequest(account_id=account, consistency_token=token)
    )
    first_read = asyncio.ensure_future(stream.read())
    done, _ = await asyncio.wait([first_read], timeout=0.3)
    assert not done, "the first message must wait for the token"
    await writer.move(account, "DEPOSIT", "2", at=T0 + timedelta(seconds=1))
    first = await asyncio.wait_for(first_read, PROMPTLY_S)
    assert isinstance(first, pb.WatchAccountResponse)
    assert (first.account.version, first.account.balance) == (2, "2.00")
    await writer.move(account, "DEPOSIT", "3", at=T0 + timedelta(seconds=2))
    second = await next_update(stream)
    assert (second.transaction.amount, second.account.balance) == ("3.00", "5.00")
    stream.cancel()
