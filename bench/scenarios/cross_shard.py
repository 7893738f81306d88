"""Scenario 7: transfers with one shard, and across three (docs/design.md, decision 13).

One command server owning every partition takes transfers between random accounts (all
same-shard: one transaction each, the baseline). Then three shards of one ledger take transfers
between random accounts of different shards, each sent to its debited account's shard: every
one is a saga (debit and credit request, credit and notice on the other shard), and the call
answers once the credit is known, so its latency is "acknowledged to credited". Each runs with
a fixed number of concurrent callers for a fixed time, from this process (grpc.aio).

Reported: transfers/s, call latency p50/p99, how many answered PENDING (not credited within
the wait), and the command servers' CPU per transfer (all their processes): three shards on
two cores cannot scale throughput, so CPU per transfer is what shows what the saga costs.
"""

from __future__ import annotations

import asyncio
import random
import statistics
import time
from contextlib import ExitStack

from bench.harness import Bench, CpuMeter, running_all
from bench.report import Report, Row
from devstack.ledger_services import LedgerService
from devstack.ports import LOOPBACK, free_port
from ledger.command_ids import new_command_id
from ledger.partitioning import partition_of
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc

PARTITIONS = 6
ACCOUNTS_PER_SHARD = 200
FULL = (32, 20.0)
QUICK = (16, 8.0)
"""(concurrent callers, seconds) of each run."""


def _shards(bench: Bench, topic: str, count: int) -> list[LedgerService]:
    return [
        LedgerService.command_server(
            bench.stack,
            bench.work_dir / f"cross-{topic}-{index}",
            topic=topic,
            extra_env={
                "LEDGER_LOG_LEVEL": "WARNING",
                "LEDGER_METRICS_ADDR": f"{LOOPBACK}:{free_port()}",
                "LEDGER_PARTITIONS": str(PARTITIONS),
                "LEDGER_SHARD_INDEX": str(index),
                "LEDGER_SHARD_COUNT": str(count),
            },
        )
        for index in range(count)
    ]


async def _measure(services: list[LedgerService], callers: int, seconds: float) -> dict[str, float]:
    count = len(services)
    channels = [s.channel() for s in services]
    stubs = [pb_grpc.CommandServiceStub(c) for c in channels]

    def stub_of(account: str) -> pb_grpc.CommandServiceAsyncStub:
        return stubs[partition_of(account, PARTITIONS) % count]

    accounts: list[list[str]] = [[] for _ in range(count)]
    serial = 0
    while min(len(a) for a in accounts) < ACCOUNTS_PER_SHARD:
        account = f"xs-{serial}"
        serial += 1
        shard = partition_of(account, PARTITIONS) % count
        if len(accounts[shard]) < ACCOUNTS_PER_SHARD:
            accounts[shard].append(account)
    everyone = [a for shard in accounts for a in shard]

    async def funded(account: str) -> None:
        stub = stub_of(account)
        await stub.OpenAccount(
            pb.OpenAccountRequest(command_id=new_command_id(), account_id=account, currency="USD")
        )
        await stub.Deposit(
            pb.DepositRequest(command_id=new_command_id(), account_id=account, amount="1000000")
        )

    await asyncio.gather(*(funded(account) for account in everyone))
    latencies: list[float] = []
    pending = 0
    rng = random.Random(7)

    async def caller(stop: float) -> None:
        nonlocal pending
        while time.monotonic() < stop:
            source_shard = rng.randrange(count)
            target_shard = (source_shard + 1 + rng.randrange(count - 1)) % count if count > 1 else 0
            source = rng.choice(accounts[source_shard])
            target = rng.choice([a for a in accounts[target_shard] if a != source])
            request = pb.TransferRequest(
                command_id=new_command_id(),
                from_account_id=source,
                to_account_id=target,
                amount="1.00",
            )
            began = time.monotonic()
            answer = await stub_of(source).Transfer(request, timeout=30)
            latencies.append(time.monotonic() - began)
            pending += answer.status == pb.TRANSFER_STATUS_PENDING

    meters = [CpuMeter(s.pid or 0) for s in services]
    for meter in meters:
        meter.start()
    began = time.monotonic()
    await asyncio.gather(*(caller(began + seconds) for _ in range(callers)))
    for meter in meters:
        meter.stop()
    wall = time.monotonic() - began
    for channel in channels:
        await channel.close()
    done = len(latencies)
    cuts = statistics.quantiles(latencies, n=100)
    return {
        "commands_per_s": done / wall,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": cuts[98] * 1000,
        "pending": float(pending),
        "server_cores": sum(m.cores for m in meters),
        "server_cpu_ms": sum(m.cpu_s for m in meters) * 1000 / done,
    }


def run(bench: Bench, report: Report) -> None:
    callers, seconds = QUICK if bench.quick else FULL
    load = f"{callers} callers, {seconds:.0f}s"
    for count in (1, 3):
        topic = bench.new_topic(f"cross-shard-{count}")
        services = _shards(bench, topic, count)
        with ExitStack() as stack:
            stack.enter_context(running_all(services))
            figures = asyncio.run(_measure(services, callers, seconds))
        target = "1 shard (same-shard)" if count == 1 else "3 shards (cross-shard saga)"
        report.rows.append(Row("cross_shard", target, load, figures, [figures]))
        print(f"   {target}: {figures}", flush=True)
    report.notes.append(
        "cross_shard: latency is the Transfer call's, which with three shards waits for the "
        "credit on the other shard (acknowledged to credited); CPU per transfer sums every "
        "shard's processes"
    )
