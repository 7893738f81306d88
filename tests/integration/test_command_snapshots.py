"""Restarts from snapshots: the same state and the same answers as a replay of the whole log."""

from __future__ import annotations

import random
import re
import uuid
from collections import Counter
from pathlib import Path

import grpc
import pytest

from devstack.ledger_services import LedgerService
from devstack.stack import LocalStack
from ledger.command_ids import new_command_id
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc
from tests.integration.test_command_server import read_events

pytestmark = pytest.mark.integration

_REBUILT = re.compile(r"rebuilt (\d+) accounts from (\d+) events")
_RESTORED = re.compile(r"restored partitions from snapshots in [0-9.]+s, replayed from offsets")

Request = pb.OpenAccountRequest | pb.DepositRequest | pb.WithdrawRequest | pb.TransferRequest
Response = pb.OpenAccountResponse | pb.DepositResponse | pb.WithdrawResponse | pb.TransferResponse


def _id() -> str:
    return uuid.uuid4().hex


async def _send(client: pb_grpc.CommandServiceAsyncStub, request: Request) -> tuple[int, str]:
    response: Response
    match request:
        case pb.OpenAccountRequest():
            response = await client.OpenAccount(request)
        case pb.DepositRequest():
            response = await client.Deposit(request)
        case pb.WithdrawRequest():
            response = await client.Withdraw(request)
        case pb.TransferRequest():
            response = await client.Transfer(request)
    return response.version, response.consistency_token


def _last(pattern: re.Pattern[str], text: str) -> tuple[int, ...]:
    found = pattern.findall(text)
    assert found, f"no line matching {pattern.pattern!r}"
    last = found[-1]
    return tuple(int(n) for n in (last if isinstance(last, tuple) else (last,)))


async def test_restarts_from_snapshots_give_the_same_state_and_answers(
    stack: LocalStack, topic: str, tmp_path: Path
) -> None:
    # A snapshot every few events (however soon after the last), so that the kill below leaves
    # a tail after the last one.
    every_7 = {"LEDGER_SNAPSHOT_EVERY_EVENTS": "7", "LEDGER_SNAPSHOT_MIN_SECONDS": "0"}
    service = LedgerService.command_server(stack, tmp_path, topic=topic, extra_env=every_7)
    rng = random.Random(8)
    balances: dict[str, int] = {}
    versions: dict[str, int] = {}
    answered: list[tuple[Request, tuple[int, str]]] = []
    service.start()
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            client = pb_grpc.CommandServiceStub(channel)
            # Enough accounts to spread over every partition, so transfers cross partitions.
            for n in range(12):
                account = f"snap-{n}-{_id()[:6]}"
                request: Request = pb.OpenAccountRequest(
                    command_id=new_command_id(), account_id=account, currency="EUR", owner="S"
                )
                answered.append((request, await _send(client, request)))
                balances[account], versions[account] = 0, 1
            accounts = sorted(balances)
            for _ in range(60):
                source, target = rng.sample(accounts, 2)
                cents = rng.randint(1, 900)
                if balances[source] >= cents and rng.random() < 0.5:
                    request = pb.TransferRequest(
                        command_id=new_command_id(),
                        from_account_id=source,
                        to_account_id=target,
                        amount=f"{cents / 100:.2f}",
                    )
                    balances[source] -= cents
                    balances[target] += cents
                    versions[target] += 1
                else:
                    request = pb.DepositRequest(
                        command_id=new_command_id(), account_id=source, amount=f"{cents / 100:.2f}"
                    )
                    balances[source] += cents
                versions[source] += 1
                answered.append((request, await _send(client, request)))
        service.kill()

        service.start()
        log = service.log_text()
        assert _RESTORED.search(log), "no partition was restored from a snapshot"
        # Only the tail after the last snapshot was replayed.
        assert 0 < _last(_REBUILT, log)[1] < len(answered)
        async with grpc.aio.insecure_channel(service.address) as channel:
            client = pb_grpc.CommandServiceStub(channel)
            for request, answer in answered:
                assert await _send(client, request) == answer, request
        service.stop()
        # A clean stop snapshots everything: the next start replays nothing.
        service.start()
        assert _last(_REBUILT, service.log_text()) == (len(accounts), 0)
        async with grpc.aio.insecure_channel(service.address) as channel:
            client = pb_grpc.CommandServiceStub(channel)
            for request, answer in answered:
                assert await _send(client, request) == answer, request
            # Balances and versions survived exactly: emptying each account works, then nothing.
            for account in accounts:
                empty = pb.WithdrawRequest(
                    command_id=new_command_id(),
                    account_id=account,
                    amount=f"{balances[account] / 100:.2f}",
                )
                if balances[account]:
                    version, _ = await _send(client, empty)
                    assert version == versions[account] + 1
                with pytest.raises(grpc.aio.AioRpcError) as refused:
                    await client.Withdraw(
                        pb.WithdrawRequest(
                            command_id=new_command_id(), account_id=account, amount="0.01"
                        )
                    )
                assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    finally:
        service.stop()
    counts = Counter(event.command_id for event in read_events(stack, topic))
    assert all(counts[request.command_id] >= 1 for request, _ in answered)
    # Transfers write two events; nothing was written twice.
    assert sum(counts.values()) == len(answered) + sum(
        isinstance(request, pb.TransferRequest) for request, _ in answered
    ) + sum(1 for a in accounts if balances[a])


@pytest.fixture
def topic() -> str:
    return f"account_events_{_id()[:12]}"
