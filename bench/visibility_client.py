"""One client process of the visibility scenario: Deposits at a fixed rate, every `read_every`-th
followed at once by a GetAccount carrying the deposit's consistency token (read-your-writes).

Open loop: command i is sent at start + i / rate whether or not earlier ones were answered, so a
slow server shows up as latency, not as a lower offered rate. How late each send left against
that schedule is recorded too: a client that cannot keep up with its own schedule is seen there
rather than mistaken for server latency. Run in several processes (`multiprocessing`, spawn)
when one Python process cannot offer the rate by itself.
"""

from __future__ import annotations

import asyncio
import random
import resource
import time
from collections import Counter
from dataclasses import dataclass, field

import grpc

from ledger.command_ids import new_command_id
from ledger.v1 import commands_pb2, commands_pb2_grpc, queries_pb2, queries_pb2_grpc


@dataclass(frozen=True)
class ClientPlan:
    command_address: str
    query_address: str
    rate: float
    """Deposits per second this process offers."""
    seconds: float
    accounts: int
    account_prefix: str
    read_every: int = 1
    """Every how many acknowledged Deposits one is read back: the reads probe the lag without
    doubling the load they measure it under."""
    timeout_s: float = 10.0
    max_in_flight: int = 5_000
    """Beyond this many unanswered commands, sends are skipped (and counted) rather than queued
    without bound."""


@dataclass
class ClientRun:
    sent: int = 0
    acked_in_window: int = 0
    """Deposits acknowledged within the run's `seconds` (the achieved rate's numerator)."""
    ack_ms: list[float] = field(default_factory=list)
    visible_ms: list[float] = field(default_factory=list)
    """From a deposit's acknowledgement until the GetAccount with its token answered."""
    late_ms: list[float] = field(default_factory=list)
    stale: int = 0
    """Answers older than the acknowledged deposit (would break read-your-writes)."""
    skipped: int = 0
    errors: dict[str, int] = field(default_factory=dict)
    error_samples: dict[str, str] = field(default_factory=dict)
    """The first error's details per kind of error, to tell what went wrong."""
    cpu_s: float = 0.0
    wall_s: float = 0.0


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)  # every thread: gRPC's poller too
    return usage.ru_utime + usage.ru_stime


class _Client:
    def __init__(self, plan: ClientPlan, commands: grpc.aio.Channel, queries: grpc.aio.Channel):
        self._plan = plan
        self._deposit = commands_pb2_grpc.CommandServiceStub(commands).Deposit
        self._get_account = queries_pb2_grpc.QueryServiceStub(queries).GetAccount
        self._errors: Counter[str] = Counter()
        self.run = ClientRun()
        self.window_end = 0.0

    def _failed(self, method: str, error: grpc.aio.AioRpcError) -> None:
        kind = f"{method} {error.code().name}"
        self._errors[kind] += 1
        self.run.error_samples.setdefault(kind, str(error.details())[:200])

    async def one(self, account_id: str, read_back: bool) -> None:
        request = commands_pb2.DepositRequest(
            command_id=new_command_id(), account_id=account_id, amount="1.00"
        )
        sent = time.perf_counter()
        try:
            ack = await self._deposit(request, timeout=self._plan.timeout_s)
        except grpc.aio.AioRpcError as error:
            self._failed("Deposit", error)
            return
        acked = time.perf_counter()
        self.run.ack_ms.append((acked - sent) * 1000)
        if acked <= self.window_end:
            self.run.acked_in_window += 1
        if not read_back:
            return
        query = queries_pb2.GetAccountRequest(
            account_id=account_id, consistency_token=ack.consistency_token
        )
        try:
            answer = await self._get_account(query, timeout=self._plan.timeout_s)
        except grpc.aio.AioRpcError as error:
            self._failed("GetAccount", error)
            return
        answered = time.perf_counter()
        self.run.visible_ms.append((answered - acked) * 1000)
        if answer.account.version < ack.version:
            self.run.stale += 1

    async def drive(self) -> ClientRun:
        plan = self._plan
        total = int(plan.rate * plan.seconds)
        in_flight: set[asyncio.Task[None]] = set()
        cpu_started = _cpu_seconds()
        started = time.perf_counter()
        self.window_end = started + plan.seconds
        # Client processes read back on different turns, so that their reads do not come in
        # pairs.
        phase = random.randrange(plan.read_every)
        for number in range(total):
            due = started + number / plan.rate
            delay = due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if len(in_flight) >= plan.max_in_flight:
                self.run.skipped += 1
                continue
            self.run.late_ms.append(max(0.0, time.perf_counter() - due) * 1000)
            account_id = f"{plan.account_prefix}{random.randrange(plan.accounts)}"
            task = asyncio.create_task(self.one(account_id, number % plan.read_every == phase))
            in_flight.add(task)
            task.add_done_callback(in_flight.discard)
            self.run.sent += 1
        await asyncio.gather(*in_flight)
        self.run.wall_s = time.perf_counter() - started
        self.run.cpu_s = _cpu_seconds() - cpu_started
        self.run.errors = dict(self._errors)
        return self.run


async def _drive(plan: ClientPlan) -> ClientRun:
    async with (
        grpc.aio.insecure_channel(plan.command_address) as commands,
        grpc.aio.insecure_channel(plan.query_address) as queries,
    ):
        await asyncio.wait_for(commands.channel_ready(), plan.timeout_s)
        await asyncio.wait_for(queries.channel_ready(), plan.timeout_s)
        return await _Client(plan, commands, queries).drive()


def drive(plan: ClientPlan) -> ClientRun:
    """Run `plan` in this process (the entry point of each multiprocessing worker)."""
    return asyncio.run(_drive(plan))
