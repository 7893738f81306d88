"""GetAccount and ListAccounts over rows written as the projector writes them."""

from __future__ import annotations

import asyncio
import itertools
from datetime import timedelta

import grpc
import pytest

from ledger.consistency import ConsistencyToken
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.integration.query_server.read_model_writer import (
    T0,
    ReadModelWriter,
    failure_of,
    timestamp,
    unique_id,
)

pytestmark = pytest.mark.integration


async def test_get_account_formats_money_with_the_currencys_places(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    usd, jpy, kwd = unique_id("usd"), unique_id("jpy"), unique_id("kwd")
    await writer.open(usd, currency="USD", owner="Ada", at=T0)
    await writer.open(jpy, currency="JPY", at=T0)
    await writer.open(kwd, currency="KWD", at=T0)
    later = T0 + timedelta(hours=1)
    await writer.moves(
        [
            (usd, "DEPOSIT", "12.3", later, None, None),
            (jpy, "DEPOSIT", "5", later, None, None),
            (kwd, "DEPOSIT", "1.5", later, None, None),
        ]
    )
    answer = await client.GetAccount(pb.GetAccountRequest(account_id=usd))
    assert answer.account == pb.Account(
        account_id=usd,
        currency="USD",
        owner="Ada",
        status=pb.ACCOUNT_STATUS_OPEN,
        balance="12.30",
        version=2,
        opened_at=timestamp(T0),
        updated_at=timestamp(later),
    )
    assert ConsistencyToken.decode(answer.freshness.consistency_token) == ConsistencyToken(
        writer.offsets
    )
    assert answer.freshness.HasField("as_of")
    for account_id, balance in ((jpy, "5"), (kwd, "1.500")):
        reply = await client.GetAccount(pb.GetAccountRequest(account_id=account_id))
        assert reply.account.balance == balance


async def test_get_accounts_at_once_each_get_their_own_account(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    # Calls arriving while one is read are read together by one statement: every answer must
    # still be its own account, duplicates and unknown accounts included.
    known = [unique_id(f"many{n}") for n in range(12)]
    for n, account_id in enumerate(known):
        await writer.open(account_id, currency="EUR", owner=f"owner {n}", at=T0)
    unknown = unique_id("nobody")
    asked = [*known, known[3], unknown, *reversed(known), known[3], unknown]

    answers = await asyncio.gather(
        *(client.GetAccount(pb.GetAccountRequest(account_id=a)) for a in asked),
        return_exceptions=True,
    )

    for account_id, answer in zip(asked, answers, strict=True):
        if account_id == unknown:
            assert isinstance(answer, grpc.aio.AioRpcError)
            assert answer.code() == grpc.StatusCode.NOT_FOUND
        else:
            assert isinstance(answer, pb.GetAccountResponse)
            assert answer.account.account_id == account_id
            assert answer.account.owner == f"owner {known.index(account_id)}"


async def test_list_accounts_returns_every_account_once_while_accounts_are_opened(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    prefix = unique_id("list")
    present = {f"{prefix}-{n:03d}" for n in range(0, 120, 2)}
    for account_id in sorted(present):
        await writer.open(account_id, currency="CHF")
    seen: list[str] = []
    opened_ahead: set[str] = set()
    token = ""
    for page_number in itertools.count():
        page = await client.ListAccounts(
            pb.ListAccountsRequest(page_size=7, page_token=token, currency="CHF")
        )
        seen += [account.account_id for account in page.accounts]
        if not page.next_page_token:
            break
        token = page.next_page_token
        cursor = page.accounts[-1].account_id
        # Open one account in the part already listed and one in the part still to come.
        for n in (page_number * 2 + 1, 119 - page_number * 2):
            account_id = f"{prefix}-{n:03d}"
            await writer.open(account_id, currency="CHF")
            if account_id > cursor:
                opened_ahead.add(account_id)
    assert seen == sorted(set(seen)), "ascending, each account once"
    # Pages continue after the last id seen: later accounts are included if they sort later.
    assert set(seen) == present | opened_ahead
    assert opened_ahead


async def test_list_accounts_filters_and_caps_pages(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    prefix = unique_id("filter")
    await writer.open(f"{prefix}-open", currency="SEK")
    await writer.open(f"{prefix}-closed", currency="SEK")
    await writer.close(f"{prefix}-closed", at=T0 + timedelta(minutes=1))
    await writer.open(f"{prefix}-nok", currency="NOK")

    async def ids(request: pb.ListAccountsRequest) -> list[str]:
        page = await client.ListAccounts(request)
        return [a.account_id for a in page.accounts if a.account_id.startswith(prefix)]

    assert await ids(pb.ListAccountsRequest(currency="SEK")) == [
        f"{prefix}-closed",
        f"{prefix}-open",
    ]
    assert await ids(pb.ListAccountsRequest(currency="SEK", status=pb.ACCOUNT_STATUS_CLOSED)) == [
        f"{prefix}-closed"
    ]
    assert await ids(pb.ListAccountsRequest(status=pb.ACCOUNT_STATUS_OPEN)) == [
        f"{prefix}-nok",
        f"{prefix}-open",
    ]
    everything = await client.ListAccounts(pb.ListAccountsRequest(page_size=100_000))
    assert len(everything.accounts) <= 500
    listed = [a.account_id for a in everything.accounts]
    assert listed == sorted(listed)

    first = await client.ListAccounts(pb.ListAccountsRequest(currency="SEK", page_size=1))
    assert first.next_page_token
    code, details = await failure_of(
        client.ListAccounts(
            pb.ListAccountsRequest(currency="NOK", page_size=1, page_token=first.next_page_token)
        )
    )
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert "different ListAccounts query" in details
