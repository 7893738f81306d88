"""What forwarding costs (not part of `make bench`): three command-server shards over TLS with
tokens, as `LEDGER_COMMAND_SHARDS=3 make run` starts them, and the same Deposits to accounts of
shard 1 sent either to shard 1 itself ("direct") or to shard 0, which forwards them ("forwarded").

    .venv/bin/python -m bench.forwarding_probe [--rounds 4] [--seconds 8] [--clients 1,32]

Per round and per client count, the two ways run one after the other (which goes first
alternates), each for `--seconds`, every client a loop of Deposits on its own channel. Printed:
per way and client count the median over rounds of the call latency's p50 and p99, the rate,
and the CPU per command of all three shards' process trees; then the forwarded/direct ratios.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

from confluent_kafka.admin import AdminClient

from bench.procstat import tree_cpu_seconds
from command_server.topic import ensure_event_topic
from devstack import LocalStack, StackPorts
from devstack.credentials import local_credentials
from devstack.ledger_services import LedgerService, running
from devstack.ports import LOOPBACK, free_port
from ledger.command_ids import new_command_id
from ledger.partitioning import partition_of
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import commands_pb2_grpc as cmd_grpc

PARTITIONS = 6
SHARDS = 3
OWNER = 1
ENTRY = 0


def _accounts(count: int) -> list[str]:
    run = uuid.uuid4().hex[:6]
    names = (f"probe-{run}-{n}" for n in range(100 * count))
    return [a for a in names if partition_of(a, PARTITIONS) % SHARDS == OWNER][:count]


async def _load(
    shard: LedgerService, token: str, accounts: Sequence[str], clients: int, seconds: float
) -> list[float]:
    """Latencies (s) of the Deposits `clients` loops sent to `shard` in `seconds`."""
    latencies: list[float] = []
    end = time.monotonic() + seconds

    async def client(index: int) -> None:
        async with shard.channel(token) as channel:
            stub = cmd_grpc.CommandServiceStub(channel)
            account = accounts[index % len(accounts)]
            while time.monotonic() < end:
                request = cmd.DepositRequest(
                    command_id=new_command_id(), account_id=account, amount="1"
                )
                began = time.monotonic()
                await stub.Deposit(request, timeout=30)
                latencies.append(time.monotonic() - began)

    await asyncio.gather(*(client(i) for i in range(clients)))
    return latencies


async def _probe(args: argparse.Namespace, stack: LocalStack, data_dir: Path) -> None:
    topic = f"probe_{uuid.uuid4().hex[:8]}"
    ensure_event_topic(AdminClient({"bootstrap.servers": stack.kafka_bootstrap}), topic, 6)
    credentials = local_credentials(data_dir)
    token = credentials.token("writer")
    addresses = [f"{LOOPBACK}:{free_port()}" for _ in range(SHARDS)]
    shards = LedgerService.command_shards(
        stack,
        data_dir,
        addresses,
        topic=topic,
        extra_env=lambda i: {"LEDGER_METRICS_ADDR": f"{LOOPBACK}:{free_port()}"},
        secure=credentials,
    )
    with running(shards):
        accounts = _accounts(max(args.clients))
        async with shards[OWNER].channel(token) as channel:
            stub = cmd_grpc.CommandServiceStub(channel)
            for account in accounts:
                opened = cmd.OpenAccountRequest(
                    command_id=new_command_id(), account_id=account, currency="EUR"
                )
                await stub.OpenAccount(opened, timeout=30)
        ways = {"direct": shards[OWNER], "forwarded": shards[ENTRY]}
        figures: dict[tuple[str, int], list[dict[str, float]]] = {}
        for round_ in range(args.rounds):
            for clients in args.clients:
                order = list(ways) if round_ % 2 == 0 else list(reversed(ways))
                for way in order:
                    pids = [s.pid for s in shards if s.pid is not None]
                    cpu = sum(tree_cpu_seconds(p) for p in pids)
                    latencies = await _load(ways[way], token, accounts, clients, args.seconds)
                    cpu = sum(tree_cpu_seconds(p) for p in pids) - cpu
                    cuts = statistics.quantiles(latencies, n=100)
                    figures.setdefault((way, clients), []).append(
                        {
                            "p50_ms": cuts[49] * 1000,
                            "p99_ms": cuts[98] * 1000,
                            "rate": len(latencies) / args.seconds,
                            "cpu_us": cpu / len(latencies) * 1e6,
                        }
                    )
                    print(
                        f"round {round_} {way:>9} {clients:>3} clients: {figures[way, clients][-1]}"
                    )
        _print(figures, args.clients)


def _print(figures: dict[tuple[str, int], list[dict[str, float]]], clients: Sequence[int]) -> None:
    print("\nway        clients  p50 ms  p99 ms  commands/s  shards' CPU µs/command")
    medians: dict[tuple[str, int], dict[str, float]] = {}
    for (way, count), runs in sorted(figures.items(), key=lambda item: (item[0][1], item[0][0])):
        median = {k: statistics.median(r[k] for r in runs) for k in runs[0]}
        medians[way, count] = median
        print(
            f"{way:<10} {count:>7} {median['p50_ms']:>7.2f} {median['p99_ms']:>7.2f}"
            f" {median['rate']:>11.0f} {median['cpu_us']:>10.0f}"
        )
    for count in clients:
        direct, forwarded = medians["direct", count], medians["forwarded", count]
        ratios = {k: forwarded[k] / direct[k] for k in direct}
        print(
            f"forwarded/direct at {count} clients: "
            + ", ".join(f"{k} {v:.2f}x" for k, v in ratios.items())
        )


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.forwarding_probe")
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=8.0)
    parser.add_argument("--clients", type=lambda s: [int(n) for n in s.split(",")], default=[1, 32])
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="forwarding-probe-") as directory:
        data_dir = Path(directory)
        with LocalStack(data_dir / "stack", StackPorts.free()) as stack:
            asyncio.run(_probe(args, stack, data_dir))


if __name__ == "__main__":
    main()
