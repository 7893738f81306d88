"""The batch benchmarks' load client: ExecuteBatch of Deposits, and GetAccounts, over grpc.aio.

ghz sends one templated request per call; a batch of 1,000 Deposits, each with a fresh UUIDv7
command id, is not a template it can fill, so the load comes from Python with the generated
stubs. Per command the client spends a few microseconds building the request (its CPU is
reported beside every figure), a batch call's cost on both sides being spread over its commands.

Closed loop (`closed_loop`): `clients` calls in flight, each sending its next batch when the
previous one is answered. Open loop (`open_loop`): batch i is sent at start + i * size / rate
whether or not earlier ones were answered, so a slow server shows as latency, not as a lower
offered rate; every `read_every`-th acknowledged batch is read back at once with GetAccounts
and the batch's consistency token (the query server answers once the read model includes it).
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

import grpc

from bench.scenarios.visibility import percentile
from ledger.command_ids import new_command_ids
from ledger.v1 import commands_pb2, commands_pb2_grpc, queries_pb2, queries_pb2_grpc

_Reply = TypeVar("_Reply")

TIMEOUT_S = 30.0
READ_BACK_IDS = 10
"""Accounts of an acknowledged batch read back with its token."""


@dataclass(frozen=True)
class Accounts:
    """The accounts deposits go to: `<prefix>0` … `<prefix><count - 1>`."""

    prefix: str
    count: int

    def ids(self, rng: random.Random, size: int) -> list[str]:
        return [f"{self.prefix}{rng.randrange(self.count)}" for _ in range(size)]


def deposits(accounts: list[str]) -> commands_pb2.ExecuteBatchRequest:
    """A batch of Deposits of 1.00, one per account id (repeats allowed), each a new command."""
    request = commands_pb2.ExecuteBatchRequest()
    add, deposit = request.commands.add, commands_pb2.DepositRequest
    for account_id, command_id in zip(accounts, new_command_ids(len(accounts)), strict=True):
        add(deposit=deposit(command_id=command_id, account_id=account_id, amount="1.00"))
    return request


@dataclass
class LoadRun:
    """What one run of a load achieved."""

    ok: int = 0
    """Commands (or accounts read) that succeeded within the run."""
    failed: int = 0
    calls: int = 0
    call_ms: list[float] = field(default_factory=list)
    visible_ms: list[float] = field(default_factory=list)
    late_ms: list[float] = field(default_factory=list)
    errors: Counter[str] = field(default_factory=Counter)
    wall_s: float = 0.0
    cpu_s: float = 0.0
    """This process's CPU seconds over the run (every thread: gRPC's poller too)."""

    @property
    def per_s(self) -> float:
        return self.ok / self.wall_s if self.wall_s > 0 else 0.0

    def call_figures(self) -> dict[str, float]:
        """The calls' latency (median, p99), errors (failed results and calls) and client cores."""
        return {
            "p50_ms": percentile(self.call_ms, 0.5),
            "p99_ms": percentile(self.call_ms, 0.99),
            "errors": float(self.failed + sum(self.errors.values())),
            "client_cores": self.cpu_s / self.wall_s if self.wall_s > 0 else float("nan"),
        }


def _count(run: LoadRun, response: commands_pb2.ExecuteBatchResponse) -> None:
    codes = Counter(result.code for result in response.results)
    ok = codes.pop(0, 0)
    run.ok += ok
    run.failed += sum(codes.values())
    for code, times in codes.items():
        run.errors[f"result code {code}"] += times


def _pushback_s(error: grpc.aio.AioRpcError) -> float:
    """The retry hint of a refusal (`grpc-retry-pushback-ms`), or a tenth of a second."""
    for key, value in error.trailing_metadata() or ():
        if key == "grpc-retry-pushback-ms":
            return int(value) / 1000
    return 0.1


async def _timed_call(run: LoadRun, call: Awaitable[_Reply]) -> _Reply | None:
    """`call`'s answer, its latency and count recorded in `run`; None if it failed (counted, and
    waited out as the server asks before the caller sends again, as a client should)."""
    sent = time.monotonic()
    try:
        reply = await call
    except grpc.aio.AioRpcError as error:
        run.errors[error.code().name] += 1
        await asyncio.sleep(_pushback_s(error))
        return None
    run.calls += 1
    run.call_ms.append((time.monotonic() - sent) * 1000)
    return reply


async def _back_to_back(
    run: LoadRun, clients: int, seconds: float, call: Callable[[random.Random], Awaitable[None]]
) -> LoadRun:
    """`clients` callers making `call` one after the other for `seconds` (each with its own
    random numbers); `call` counts what it got into `run`, this the time and CPU it took."""
    cpu_started = time.process_time()
    started = time.monotonic()
    deadline = started + seconds

    async def caller(slot: int) -> None:
        rng = random.Random(slot)
        while time.monotonic() < deadline:
            await call(rng)

    await asyncio.gather(*(caller(slot) for slot in range(clients)))
    run.wall_s = time.monotonic() - started
    run.cpu_s = time.process_time() - cpu_started
    return run


async def closed_loop(
    address: str, accounts: Accounts, size: int, clients: int, seconds: float
) -> LoadRun:
    """`clients` callers sending batches of `size` Deposits back to back for `seconds`."""
    run = LoadRun()
    async with grpc.aio.insecure_channel(address) as channel:
        execute = commands_pb2_grpc.CommandServiceStub(channel).ExecuteBatch

        async def call(rng: random.Random) -> None:
            response = await _timed_call(
                run, execute(deposits(accounts.ids(rng, size)), timeout=TIMEOUT_S)
            )
            if response is not None:
                _count(run, response)

        return await _back_to_back(run, clients, seconds, call)


async def open_loop(
    command_address: str,
    query_address: str,
    accounts: Accounts,
    size: int,
    rate: float,
    seconds: float,
    read_every: int,
) -> LoadRun:
    """Batches of `size` at `rate` commands/s for `seconds` on a fixed schedule; every
    `read_every`-th acknowledged batch read back with its consistency token."""
    run = LoadRun()
    interval = size / rate
    async with (
        grpc.aio.insecure_channel(command_address) as commands,
        grpc.aio.insecure_channel(query_address) as queries,
    ):
        execute = commands_pb2_grpc.CommandServiceStub(commands).ExecuteBatch
        get_accounts = queries_pb2_grpc.QueryServiceStub(queries).GetAccounts
        rng = random.Random(0)

        async def one(number: int, request: commands_pb2.ExecuteBatchRequest) -> None:
            sent = time.monotonic()
            try:
                response = await execute(request, timeout=TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                run.errors[error.code().name] += 1
                return
            acked = time.monotonic()
            run.calls += 1
            run.call_ms.append((acked - sent) * 1000)
            _count(run, response)
            if number % read_every or not response.consistency_token:
                return
            ids = [command.deposit.account_id for command in request.commands[:READ_BACK_IDS]]
            read = queries_pb2.GetAccountsRequest(
                account_ids=ids, consistency_token=response.consistency_token
            )
            try:
                answer = await get_accounts(read, timeout=TIMEOUT_S)
            except grpc.aio.AioRpcError as error:
                run.errors[f"GetAccounts {error.code().name}"] += 1
                return
            run.visible_ms.append((time.monotonic() - acked) * 1000)
            if answer.missing:
                run.errors["GetAccounts missing an acknowledged account"] += 1

        cpu_started = time.process_time()
        started = time.monotonic()
        pending: set[asyncio.Task[None]] = set()
        number = 0
        while (due := started + number * interval) < started + seconds:
            delay = due - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            run.late_ms.append(max(0.0, -delay) * 1000)
            task = asyncio.create_task(one(number, deposits(accounts.ids(rng, size))))
            pending.add(task)
            task.add_done_callback(pending.discard)
            number += 1
        run.wall_s = time.monotonic() - started
        if pending:
            await asyncio.wait(pending, timeout=TIMEOUT_S * 2)
        run.cpu_s = time.process_time() - cpu_started
    return run


async def read_accounts(
    address: str, accounts: Accounts, per_call: int, clients: int, seconds: float
) -> LoadRun:
    """`clients` callers asking GetAccounts for `per_call` random distinct ids, back to back."""
    run = LoadRun()
    async with grpc.aio.insecure_channel(address) as channel:
        get_accounts = queries_pb2_grpc.QueryServiceStub(channel).GetAccounts

        async def call(rng: random.Random) -> None:
            numbers = rng.sample(range(accounts.count), per_call)
            request = queries_pb2.GetAccountsRequest(
                account_ids=[f"{accounts.prefix}{n}" for n in numbers]
            )
            answer = await _timed_call(run, get_accounts(request, timeout=TIMEOUT_S))
            if answer is not None:
                run.ok += len(answer.accounts)
                run.failed += len(answer.missing)

        return await _back_to_back(run, clients, seconds, call)
