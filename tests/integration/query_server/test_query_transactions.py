"""ListTransactions, GetBalanceAt and GetDailySummaries: the history of accounts."""

from __future__ import annotations

import random
import uuid
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

import grpc
import pytest

from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.integration.query_server.read_model_writer import (
    T0,
    ReadModelWriter,
    failure_of,
    proto_date,
    timestamp,
    unique_id,
)

pytestmark = pytest.mark.integration


async def test_list_transactions_pages_in_both_orders_while_movements_arrive(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    account, other = unique_id("tx"), unique_id("tx-other")
    await writer.open(account, currency="EUR", partition=1)
    await writer.open(other, currency="EUR", partition=1)
    at = T0 + timedelta(days=1)
    for n in range(1, 31):
        await writer.move(account, "DEPOSIT", f"{n}.5", at=at + timedelta(minutes=n))
    await writer.moves(
        [
            (account, "TRANSFER_OUT", "10", at + timedelta(hours=1), other, "tr-1"),
            (other, "TRANSFER_IN", "10", at + timedelta(hours=1), account, "tr-1"),
        ]
    )
    for order in (pb.SORT_ORDER_ASCENDING, pb.SORT_ORDER_DESCENDING):
        newest_at_start = writer.accounts[account].version
        versions: list[int] = []
        token = ""
        while True:
            page = await client.ListTransactions(
                pb.ListTransactionsRequest(
                    account_id=account, page_size=4, page_token=token, order=order
                )
            )
            versions += [t.version for t in page.transactions]
            if not page.next_page_token:
                break
            token = page.next_page_token
            # New movements land after the newest: ascending pages reach them, descending
            # pages (already past them) do not.
            await writer.move(account, "DEPOSIT", "1", at=at + timedelta(hours=2))
        if order == pb.SORT_ORDER_ASCENDING:
            assert versions == list(range(2, writer.accounts[account].version + 1))
        else:
            assert versions == list(range(newest_at_start, 1, -1))

    page = await client.ListTransactions(
        pb.ListTransactionsRequest(
            account_id=account,
            start_time=timestamp(at + timedelta(minutes=2)),
            end_time=timestamp(at + timedelta(hours=1)),
        )
    )
    assert [t.version for t in page.transactions] == list(range(3, 32))
    first = page.transactions[0]
    assert (first.kind, first.amount, first.currency, first.balance_after) == (
        pb.TRANSACTION_KIND_DEPOSIT,
        "2.50",
        "EUR",
        "4.00",
    )
    assert first.occurred_at == timestamp(at + timedelta(minutes=2))
    transfer = await client.ListTransactions(
        pb.ListTransactionsRequest(account_id=other, order=pb.SORT_ORDER_DESCENDING, page_size=1)
    )
    (incoming,) = transfer.transactions
    assert (incoming.kind, incoming.counterparty_account_id, incoming.transfer_id) == (
        pb.TRANSACTION_KIND_TRANSFER_IN,
        account,
        "tr-1",
    )
    assert incoming.command_id
    assert uuid.UUID(incoming.event_id)


async def test_balance_at_equals_the_fold_of_the_movements(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    account = unique_id("fold")
    opened = T0 + timedelta(days=2)
    await writer.open(account, currency="GBP", at=opened)
    rng = random.Random(7)
    history: list[tuple[datetime, int, Decimal]] = []  # (time, version, balance after)
    moment = opened
    for _ in range(25):
        # Some movements share an instant with the previous one.
        moment += timedelta(milliseconds=rng.choice([0, 1, 250, 60_000]))
        balance = writer.accounts[account].balance
        if balance >= 5 and rng.random() < 0.4:
            version = await writer.move(account, "WITHDRAWAL", "5", at=moment)
        else:
            version = await writer.move(account, "DEPOSIT", f"{rng.randint(1, 900)}.25", at=moment)
        history.append((moment, version, writer.accounts[account].balance))
    closing_time = moment + timedelta(seconds=1)
    await writer.move(account, "WITHDRAWAL", str(writer.accounts[account].balance), at=closing_time)
    history.append((closing_time, writer.accounts[account].version, Decimal(0)))
    closed_at = closing_time + timedelta(minutes=1)
    closed_version = await writer.close(account, at=closed_at)

    def fold(at: datetime) -> tuple[str, int]:
        balance, version = Decimal(0), 1
        for when, movement_version, after in history:
            if when <= at:
                balance, version = after, movement_version
        if closed_at <= at:
            version = closed_version
        return f"{balance:.2f}", version

    probes = {opened, closed_at, closed_at + timedelta(days=1)}
    for when, _, _ in history:
        probes |= {when, when - timedelta(microseconds=1), when + timedelta(microseconds=1)}
    for at in sorted(probes):
        answer = await client.GetBalanceAt(
            pb.GetBalanceAtRequest(account_id=account, at=timestamp(at))
        )
        assert (answer.balance, answer.version) == fold(at), at
        assert answer.currency == "GBP"
    code, details = await failure_of(
        client.GetBalanceAt(
            pb.GetBalanceAtRequest(
                account_id=account, at=timestamp(opened - timedelta(microseconds=1))
            )
        )
    )
    assert code == grpc.StatusCode.NOT_FOUND
    assert "did not exist" in details


async def test_daily_summaries_of_an_account_and_of_the_ledger(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    first, second = unique_id("day-a"), unique_id("day-b")
    day1 = datetime(2031, 5, 31, 22, 0, tzinfo=UTC)
    await writer.open(first, currency="USD", at=day1)
    await writer.open(second, currency="JPY", at=day1)
    await writer.move(first, "DEPOSIT", "100", at=day1)
    await writer.move(first, "WITHDRAWAL", "0.5", at=day1 + timedelta(hours=1, minutes=59))
    await writer.move(second, "DEPOSIT", "700", at=day1 + timedelta(hours=2))  # June 1st
    await writer.move(first, "DEPOSIT", "1.25", at=day1 + timedelta(days=2))
    answer = await client.GetDailySummaries(
        pb.GetDailySummariesRequest(
            account_id=first,
            first_day=proto_date(date(2031, 5, 31)),
            last_day=proto_date(date(2031, 6, 30)),
        )
    )
    assert [(s.day.month, s.day.day) for s in answer.summaries] == [(5, 31), (6, 2)]
    may = answer.summaries[0]
    assert (may.inflow, may.outflow, may.movement_count, may.closing_balance) == (
        "100.00",
        "0.50",
        2,
        "99.50",
    )
    assert answer.summaries[1].closing_balance == "100.75"

    rows: list[tuple[int, str]] = []
    token = ""
    while True:
        page = await client.GetDailySummaries(
            pb.GetDailySummariesRequest(
                first_day=proto_date(date(2031, 5, 1)),
                last_day=proto_date(date(2031, 6, 2)),
                page_size=1,
                page_token=token,
            )
        )
        rows += [(s.day.day, s.account_id) for s in page.summaries]
        token = page.next_page_token
        if not token:
            break
    assert rows == [(31, first), (1, second), (2, first)]
    june = await client.GetDailySummaries(
        pb.GetDailySummariesRequest(
            account_id=second,
            first_day=proto_date(date(2031, 6, 1)),
            last_day=proto_date(date(2031, 6, 1)),
        )
    )
    assert [(s.currency, s.inflow, s.outflow) for s in june.summaries] == [("JPY", "700", "0")]
