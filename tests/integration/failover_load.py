"""Load for fail-over tests: a few clients moving money between their own accounts, retrying
the way a careful client does, and remembering every answer and when it came.

Each client owns its accounts and sends one command at a time, so it knows their balances from
its answers and never sends a command that should be refused. UNAVAILABLE and
DEADLINE_EXCEEDED are retried with the same command_id (a 3 s deadline per attempt, then a
back-off with full jitter from 50 ms doubling to 1 s); any other status is the final answer.
"""

from __future__ import annotations

import asyncio
import itertools
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Protocol

import grpc

from ledger.backoff import Backoff
from ledger.command_ids import new_command_id
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc

RETRIED = frozenset({grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED})
ATTEMPT_DEADLINE_S = 3.0
CHANNEL_OPTIONS = (
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class _Reply(Protocol):
    @property
    def version(self) -> int: ...


@dataclass
class Sent:
    """One command and what became of it."""

    kind: str
    """open, deposit, withdraw or transfer."""
    command_id: str
    accounts: tuple[str, ...]
    """The accounts it touches; the one whose version the answer carries first."""
    amount: int
    """Cents (every account is in USD)."""
    retries: int = 0
    version: int | None = None
    """The acknowledged answer's version; None while unanswered or when refused."""
    refusal: str | None = None


@dataclass
class Load:
    """Clients sending commands to one command server until `stop()`."""

    address: str
    clients: int = 4
    accounts_per_client: int = 3
    prefix: str = field(default_factory=lambda: uuid.uuid4().hex[:8])
    sent: list[Sent] = field(default_factory=list)
    acks: list[float] = field(default_factory=list)
    """When each acknowledgement arrived (time.monotonic())."""
    balances: dict[str, int] = field(default_factory=dict)
    """Each account's balance as its client's answers imply."""
    _stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def acks_since(self, moment: float) -> int:
        return sum(1 for at in self.acks if at > moment)

    def longest_gap(self, start: float, end: float) -> float:
        """The longest time without an acknowledgement between `start` and `end`."""
        moments = [start, *sorted(at for at in self.acks if start < at < end), end]
        return max(later - earlier for earlier, later in itertools.pairwise(moments))

    async def run(self) -> None:
        """Run every client until `stop()`; each finishes the command it has in hand."""
        async with grpc.aio.insecure_channel(self.address, options=CHANNEL_OPTIONS) as channel:
            stub = pb_grpc.CommandServiceStub(channel)
            await asyncio.gather(*(self._client(stub, n) for n in range(self.clients)))

    def stop(self) -> None:
        self._stopping.set()

    async def _client(self, stub: pb_grpc.CommandServiceAsyncStub, number: int) -> None:
        rng = random.Random(number)
        accounts = [f"{self.prefix}-{number}-{k}" for k in range(self.accounts_per_client)]
        for account in accounts:
            request = pb.OpenAccountRequest(
                command_id=new_command_id(), account_id=account, currency="USD", owner="failover"
            )
            await self._send(
                Sent("open", request.command_id, (account,), 0), stub.OpenAccount, request, rng
            )
            self.balances[account] = 0
        while not self._stopping.is_set():
            funded = [a for a in accounts if self.balances[a] > 0]
            choice = rng.random()
            if not funded or choice < 0.4:
                await self._deposit(stub, rng.choice(accounts), rng)
            elif choice < 0.7:
                await self._withdraw(stub, rng.choice(funded), rng)
            else:
                source = rng.choice(funded)
                target = rng.choice([a for a in accounts if a != source])
                await self._transfer(stub, source, target, rng)

    async def _deposit(
        self, stub: pb_grpc.CommandServiceAsyncStub, account: str, rng: random.Random
    ) -> None:
        amount = rng.randint(1, 50_000)
        request = pb.DepositRequest(
            command_id=new_command_id(), account_id=account, amount=_usd(amount)
        )
        sent = Sent("deposit", request.command_id, (account,), amount)
        if await self._send(sent, stub.Deposit, request, rng):
            self.balances[account] += amount

    async def _withdraw(
        self, stub: pb_grpc.CommandServiceAsyncStub, account: str, rng: random.Random
    ) -> None:
        amount = rng.randint(1, self.balances[account])
        request = pb.WithdrawRequest(
            command_id=new_command_id(), account_id=account, amount=_usd(amount)
        )
        sent = Sent("withdraw", request.command_id, (account,), amount)
        if await self._send(sent, stub.Withdraw, request, rng):
            self.balances[account] -= amount

    async def _transfer(
        self, stub: pb_grpc.CommandServiceAsyncStub, source: str, target: str, rng: random.Random
    ) -> None:
        amount = rng.randint(1, self.balances[source])
        request = pb.TransferRequest(
            command_id=new_command_id(),
            from_account_id=source,
            to_account_id=target,
            amount=_usd(amount),
        )
        sent = Sent("transfer", request.command_id, (source, target), amount)
        if await self._send(sent, stub.Transfer, request, rng):
            self.balances[source] -= amount
            self.balances[target] += amount

    async def _send(
        self,
        sent: Sent,
        method: Callable[..., Awaitable[_Reply]],
        request: object,
        rng: random.Random,
    ) -> bool:
        """Send until a final answer; whether it was acknowledged."""
        self.sent.append(sent)
        backoff = Backoff(0.05, 1.0, rng=rng)
        while True:
            try:
                reply = await method(request, timeout=ATTEMPT_DEADLINE_S)
            except grpc.aio.AioRpcError as error:
                if error.code() not in RETRIED:
                    sent.refusal = f"{error.code().name}: {error.details()}"
                    return False
                sent.retries += 1
                await asyncio.sleep(backoff.next())
                continue
            self.acks.append(time.monotonic())
            sent.version = reply.version
            return True


def _usd(cents: int) -> str:
    return f"{cents // 100}.{cents % 100:02d}"
