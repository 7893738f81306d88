"""Requests the query server refuses: malformed ones, and ones about unknown accounts."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.integration.query_server.read_model_writer import (
    T0,
    failure_of,
    timestamp,
    unique_id,
)

pytestmark = pytest.mark.integration


@pytest.mark.parametrize(
    ("rpc", "request_", "mentions"),
    [
        ("GetAccount", pb.GetAccountRequest(account_id="bad id"), "account_id"),
        ("GetAccount", pb.GetAccountRequest(), "account_id"),
        ("GetAccount", pb.GetAccountRequest(account_id="a", consistency_token="x"), "token"),
        ("GetAccount", pb.GetAccountRequest(account_id="a", consistency_token="v1.!"), "token"),
        ("ListAccounts", pb.ListAccountsRequest(page_size=-1), "page_size"),
        ("ListAccounts", pb.ListAccountsRequest(page_token="garbage"), "page_token"),
        ("ListAccounts", pb.ListAccountsRequest(currency="ZZZ"), "currency"),
        (
            "ListTransactions",
            pb.ListTransactionsRequest(
                account_id="a", start_time=Timestamp(seconds=20), end_time=Timestamp(seconds=10)
            ),
            "start_time",
        ),
        (
            "ListTransactions",
            pb.ListTransactionsRequest(account_id="a", page_token="eyJ2IjoxfQ"),
            "page_token",
        ),
        ("GetBalanceAt", pb.GetBalanceAtRequest(account_id="a"), "at is required"),
        (
            "GetDailySummaries",
            pb.GetDailySummariesRequest(
                first_day=pb.Date(year=2024, month=2, day=2),
                last_day=pb.Date(year=2024, month=2, day=1),
            ),
            "first_day",
        ),
        (
            "GetDailySummaries",
            pb.GetDailySummariesRequest(
                first_day=pb.Date(year=2024, month=2, day=30),
                last_day=pb.Date(year=2024, month=3, day=1),
            ),
            "calendar date",
        ),
        ("GetProjectionStatus", pb.GetProjectionStatusRequest(consistency_token="v2."), "token"),
        ("ListBalancesAt", pb.ListBalancesAtRequest(), "at is required"),
        (
            "ListBalancesAt",
            pb.ListBalancesAtRequest(at=Timestamp(seconds=1), account_id_prefix="a%"),
            "account_id_prefix",
        ),
        (
            "ListBalancesAt",
            pb.ListBalancesAtRequest(at=Timestamp(seconds=1), page_token="garbage"),
            "page_token",
        ),
        ("GetTrialBalance", pb.GetTrialBalanceRequest(), "at is required"),
        ("GetTrialBalance", pb.GetTrialBalanceRequest(at=Timestamp(nanos=-1)), "at is not a valid"),
    ],
)
async def test_malformed_requests_are_invalid_argument(
    client: pb_grpc.QueryServiceAsyncStub, rpc: str, request_: Any, mentions: str
) -> None:
    code, details = await failure_of(getattr(client, rpc)(request_))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert mentions in details


async def test_malformed_watch_requests_are_invalid_argument(
    client: pb_grpc.QueryServiceAsyncStub,
) -> None:
    stream = client.WatchAccount(pb.WatchAccountRequest(account_id="no spaces please"))
    code, details = await failure_of(stream.read())
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "account_id" in details


async def test_unknown_accounts_are_not_found(client: pb_grpc.QueryServiceAsyncStub) -> None:
    unknown = unique_id("nobody")
    day = pb.Date(year=2024, month=1, day=1)
    calls = [
        client.GetAccount(pb.GetAccountRequest(account_id=unknown)),
        client.ListTransactions(pb.ListTransactionsRequest(account_id=unknown)),
        client.GetBalanceAt(pb.GetBalanceAtRequest(account_id=unknown, at=timestamp(T0))),
        client.GetDailySummaries(
            pb.GetDailySummariesRequest(account_id=unknown, first_day=day, last_day=day)
        ),
        client.WatchAccount(pb.WatchAccountRequest(account_id=unknown)).read(),
    ]
    for call in calls:
        code, details = await failure_of(call)
        assert code == grpc.StatusCode.NOT_FOUND
        assert unknown in details
