"""The command-server instances of the drill's one shard: the live one, which the clients call,
and the newcomers started while it runs (a takeover) that replace it.

Clients ask for their stub at every attempt, so once the drill follows a newcomer their next
attempt goes there, like a client behind a load balancer that routes to the live instance.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import grpc

from devstack.ledger_services import LedgerService
from fault_drill.calls import CHANNEL_OPTIONS
from ledger.v1 import commands_pb2_grpc as cmd_grpc

MakeInstance = Callable[[Path], LedgerService]
"""A new (not started) command server of the shard, with its logs under the given directory."""


class Instances:
    """The command-server instances a drill started, and its clients' channels to them."""

    instances: list[LedgerService]
    _channels: list[grpc.aio.Channel]

    async def close(self) -> None:
        for channel in self._channels:
            await channel.close()

    def stop_all(self) -> None:
        for instance in reversed(self.instances):
            instance.stop()


class CommandServers(Instances):
    def __init__(self, make: MakeInstance, out_dir: Path, token: str, clients: int) -> None:
        self._make = make
        self._out_dir = out_dir
        self._token = token
        self._clients = clients
        self.live = make(out_dir)
        self.instances = [self.live]
        self._stubs: list[cmd_grpc.CommandServiceAsyncStub] = []
        self._channels: list[grpc.aio.Channel] = []

    def connect(self) -> None:
        """Channels to the live instance (one per client, as separate clients would have);
        within the running event loop."""
        channels = [self.live.channel(self._token, CHANNEL_OPTIONS) for _ in range(self._clients)]
        self._channels += channels
        self._stubs = [cmd_grpc.CommandServiceStub(channel) for channel in channels]

    def stub(self, client: int) -> cmd_grpc.CommandServiceAsyncStub:
        """The stub client `client` calls the live instance with."""
        return self._stubs[client % len(self._stubs)]

    def newcomer(self) -> LedgerService:
        """Another instance of the same shard (same topic, same transactional ids), not started;
        its logs in `takeover-<n>/logs/` of the drill's directory."""
        instance = self._make(self._out_dir / f"takeover-{len(self.instances)}")
        self.instances.append(instance)
        return instance

    def follow(self, instance: LedgerService) -> None:
        """From the next attempt on, clients call `instance`. The old channels stay open
        until the end: calls still on them finish or fail on their own."""
        self.live = instance
        self.connect()
