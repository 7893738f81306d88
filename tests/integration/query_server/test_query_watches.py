"""WatchAccount: every change of the account, in order, as the read model commits it."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import grpc
import pytest

from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.integration.query_server.read_model_writer import (
    PROMPTLY_S,
    T0,
    ReadModelWriter,
    next_update,
    timestamp,
    unique_id,
)

pytestmark = pytest.mark.integration


async def test_watch_account_streams_every_change_in_order(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter
) -> None:
    account, neighbour = unique_id("watch"), unique_id("watch-n")
    await writer.open(account, currency="EUR", owner="Wat", partition=1)
    await writer.open(neighbour, currency="EUR", partition=1)
    at = T0 + timedelta(days=3)
    await writer.move(account, "DEPOSIT", "10", at=at)

    stream = client.WatchAccount(pb.WatchAccountRequest(account_id=account))
    first = await next_update(stream)
    assert (first.account.version, first.account.balance) == (2, "10.00")
    assert not first.HasField("transaction")

    await writer.move(account, "DEPOSIT", "5", at=at + timedelta(seconds=1))
    await writer.touch(1)  # other accounts of the partition: nothing to send
    await writer.move(neighbour, "DEPOSIT", "1", at=at + timedelta(seconds=2))
    await writer.moves(  # one batch, several changes of the account
        [
            (account, "WITHDRAWAL", "3", at + timedelta(seconds=3), None, None),
            (account, "TRANSFER_OUT", "12", at + timedelta(seconds=4), neighbour, "t-9"),
            (neighbour, "TRANSFER_IN", "12", at + timedelta(seconds=4), account, "t-9"),
        ]
    )
    await writer.close(account, at=at + timedelta(seconds=5))

    updates = [await next_update(stream) for _ in range(4)]
    assert [(u.account.version, u.account.balance, u.account.status) for u in updates] == [
        (3, "15.00", pb.ACCOUNT_STATUS_OPEN),
        (4, "12.00", pb.ACCOUNT_STATUS_OPEN),
        (5, "0.00", pb.ACCOUNT_STATUS_OPEN),
        (6, "0.00", pb.ACCOUNT_STATUS_CLOSED),
    ]
    assert [u.transaction.kind for u in updates[:3]] == [
        pb.TRANSACTION_KIND_DEPOSIT,
        pb.TRANSACTION_KIND_WITHDRAWAL,
        pb.TRANSACTION_KIND_TRANSFER_OUT,
    ]
    assert [u.transaction.version for u in updates[:3]] == [3, 4, 5]
    assert updates[0].account.updated_at == timestamp(at + timedelta(seconds=1))
    assert not updates[3].HasField("transaction"), "closing moves no money"
    assert updates[3].account.owner == "Wat"
    assert await asyncio.wait_for(stream.read(), PROMPTLY_S) is grpc.aio.EOF
    assert await stream.code() == grpc.StatusCode.OK
