"""Which command-server shard owns which partitions of the event topic."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.partitioning import partition_of


@dataclass(frozen=True, slots=True)
class Shard:
    """Instance `index` of `count` owns the partitions p with p % count == index."""

    index: int
    count: int
    partitions: int
    sagas: bool = False
    """Whether the shard takes part in cross-shard transfers (docs/design.md, decision 13): with
    more than one shard, or when a transfers topic exists (transfers sent before the shard
    count went down to one must still end)."""

    def owns(self, partition: int) -> bool:
        return partition % self.count == self.index

    def owner_of(self, partition: int) -> int:
        return partition % self.count

    @property
    def owned_partitions(self) -> list[int]:
        return [p for p in range(self.partitions) if self.owns(p)]

    def partition_of(self, account_id: str) -> int:
        return partition_of(account_id, self.partitions)
