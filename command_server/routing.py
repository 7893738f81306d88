"""Which shard decides a command, and how a batch divides among shards (README, "Shards and
routing"; docs/design.md, decision 13).

A command belongs to the shard that owns its first account (`accounts_of(command)[0]`: for a
Transfer the debited one), whatever shard it arrives at. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from command_server.shards import Shard
from ledger.domain.commands import Command, accounts_of


class WrongOwner(RuntimeError):
    """A forwarded command arrived at a shard that does not own it: the shards disagree about
    the configuration (shard count, partitions, peer addresses). Not retryable."""


class AtomicAcrossShards(RuntimeError):
    """An atomic batch whose commands belong to more than one shard: one Kafka transaction
    writes one shard's partitions, so all-or-nothing cannot span shards."""


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """Where the admitted commands of a batch go: positions (in the request) per owning shard."""

    local: list[int]
    foreign: dict[int, list[int]]


@dataclass(frozen=True, slots=True)
class Router:
    shard: Shard

    @property
    def view(self) -> str:
        """This shard's view of the configuration, as a forwarding shard sends it along."""
        shard = self.shard
        return f"shard {shard.index} of {shard.count} over {shard.partitions} partitions"

    def owner_of(self, command: Command) -> int:
        return self.shard.owner_of(self.shard.partition_of(accounts_of(command)[0]))

    def is_local(self, command: Command) -> bool:
        return self.owner_of(command) == self.shard.index

    def refuse_forwarded(self, command: Command, sender_view: str) -> WrongOwner:
        """Why a command that `sender_view`'s shard forwarded here is not this shard's."""
        account = accounts_of(command)[0]
        partition = self.shard.partition_of(account)
        return WrongOwner(
            f"account {account!r} (partition {partition}) was forwarded here by {sender_view}, "
            f"as its owner, but this is {self.view}, to which shard "
            f"{self.shard.owner_of(partition)} owns it: the shards' LEDGER_SHARD_COUNT, "
            "LEDGER_PARTITIONS or LEDGER_COMMAND_PEERS disagree; fix the configuration"
        )

    def plan(self, commands: Iterable[tuple[int, Command]], *, atomic: bool) -> BatchPlan:
        """Split `commands` (position, command) by owner; raises AtomicAcrossShards when
        `atomic` and they belong to more than one shard."""
        local: list[int] = []
        foreign: dict[int, list[int]] = {}
        for position, command in commands:
            owner = self.owner_of(command)
            if owner == self.shard.index:
                local.append(position)
            else:
                foreign.setdefault(owner, []).append(position)
        if atomic and len(foreign) + bool(local) > 1:
            shards = sorted({*foreign, *([self.shard.index] if local else [])})
            raise AtomicAcrossShards(
                f"the atomic batch's commands belong to shards {shards} (the shard owning each "
                "command's first account decides it): an atomic batch must keep to one shard's "
                "accounts; send one atomic batch per shard, or a non-atomic batch"
            )
        return BatchPlan(local, foreign)
