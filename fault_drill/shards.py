"""The drill on three command-server shards (`DrillConfig.on_three_shards`): the shards, each
forwarding to the others; clients that enter by a random shard at every attempt (as behind a
load balancer); and the fault kind SHARD_PAIR, which kills the debiting and the crediting shard
of a transfer at once.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable, Mapping
from pathlib import Path

import grpc

from devstack.errors import StackError
from devstack.ledger_services import LedgerService, grpc_serving
from devstack.ports import LOOPBACK, free_port
from devstack.stack import LocalStack
from fault_drill.calls import CHANNEL_OPTIONS
from fault_drill.command_servers import Instances
from fault_drill.config import COMMAND_SERVER, DrillConfig
from fault_drill.faults import Clock, Component, Fault, start_until_ready
from fault_drill.journal import Journal, Kind
from fault_drill.workload import shard_of
from ledger.auth.local import LocalCredentials
from ledger.v1 import commands_pb2_grpc as cmd_grpc


def ledger_component(name: str, service: LedgerService, healthy: Callable[[], bool]) -> Component:
    """A Ledger process as the injector and supervisor see it: its exit code tells a crash."""

    def exit_code() -> int | None:
        try:
            return service.wait_exit(0)
        except StackError:
            return None

    return Component(name, service, service.log_file, healthy, exit_code)


def shard_component_name(index: int) -> str:
    """Shard 0 is the drill's COMMAND_SERVER (so the one-shard fault kinds still find it)."""
    return COMMAND_SERVER if index == 0 else f"{COMMAND_SERVER}_{index}"


class ShardedCommandServers(Instances):
    """The shards of the drill, and the clients' stubs: one channel per client and shard."""

    def __init__(
        self,
        stack: LocalStack,
        out_dir: Path,
        *,
        topic: str,
        env: Mapping[str, str],
        credentials: LocalCredentials,
        config: DrillConfig,
    ) -> None:
        self._token = credentials.token("writer")
        self._clients = config.clients
        self._rng = random.Random(f"{config.seed}/entry-shard")
        addresses = [f"{LOOPBACK}:{free_port()}" for _ in range(config.shards)]
        if config.transfer_wait_s is not None:
            env = {**env, "LEDGER_TRANSFER_WAIT_SECONDS": str(config.transfer_wait_s)}
        self.instances = LedgerService.command_shards(
            stack,
            out_dir,
            addresses,
            topic=topic,
            extra_env=lambda index: {**env, "LEDGER_METRICS_ADDR": f"{LOOPBACK}:{free_port()}"},
            secure=credentials,
        )
        self.live = self.instances[0]
        self.components = {
            shard_component_name(i): ledger_component(
                shard_component_name(i), shard, grpc_serving(shard.address, credentials)
            )
            for i, shard in enumerate(self.instances)
        }
        self._stubs: list[list[cmd_grpc.CommandServiceAsyncStub]] = []
        self._channels: list[grpc.aio.Channel] = []

    def connect(self) -> None:
        """Per client a channel to every shard; within the running event loop."""
        for _ in range(self._clients):
            channels = [s.channel(self._token, CHANNEL_OPTIONS) for s in self.instances]
            self._channels += channels
            self._stubs.append([cmd_grpc.CommandServiceStub(c) for c in channels])

    def stub(self, client: int) -> cmd_grpc.CommandServiceAsyncStub:
        """A random shard's stub for client `client`'s next attempt: whichever shard a command
        enters by, the owner decides it, and a retry by another shard is answered alike."""
        return self._rng.choice(self._stubs[client % len(self._stubs)])


class ShardPairKill:
    """SIGKILL of the shard owning the debited account of the latest transfer and of the shard
    owning its credited account (with same-shard transfers only: another shard at random), at
    once; both stay down for the fault's restart delay, then start again; ready once both serve.
    """

    def __init__(
        self,
        components: Mapping[str, Component],
        journal: Journal,
        clock: Clock,
        config: DrillConfig,
    ) -> None:
        self._shards = [components[shard_component_name(i)] for i in range(config.shards)]
        self._journal = journal
        self._clock = clock
        self._config = config
        self._rng = random.Random(f"{config.seed}/shard-pair")

    async def due(self) -> None:
        return None

    def _victims(self, fault: Fault) -> tuple[int, int]:
        transfers = [r for r in self._journal if r.kind is Kind.TRANSFER]
        if transfers:
            source, target = transfers[-1].accounts[:2]
            debit, credit = shard_of(source, self._config), shard_of(target, self._config)
        else:
            debit = credit = self._rng.randrange(len(self._shards))
        fault.notes["cross_shard_transfer"] = debit != credit
        if credit == debit:
            credit = self._rng.choice([i for i in range(len(self._shards)) if i != debit])
        fault.notes["debit_shard"], fault.notes["credit_shard"] = debit, credit
        return debit, credit

    async def __call__(self, fault: Fault) -> None:
        victims = [self._shards[i] for i in self._victims(fault)]
        for victim in victims:
            victim.held = True
        try:
            await asyncio.gather(*(asyncio.to_thread(v.service.kill) for v in victims))
            await asyncio.sleep(fault.restart_delay_s)
            deadline = self._config.healthy_deadline_s
            started = await asyncio.gather(
                *(start_until_ready(v, deadline, fault.start_failures) for v in victims)
            )
            if all(started):
                fault.ready_at = self._clock.now()
        finally:
            for victim in victims:
                victim.held = False
