"""The drill on a three-broker Kafka (`devstack.kafka_cluster.KafkaCluster`): where its services
find the cluster, what "Kafka is healthy" means there, and the fault kind LEADER_BROKER.

The session's single-node stack still runs the registry (its schemas in that node's Kafka) and
PostgreSQL; only the event topic and the Ledger processes' Kafka traffic go to the cluster, with
the production minimums (3 replicas, `min.insync.replicas` 2) checked by the command server.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import Counter

from devstack.errors import StackError
from devstack.kafka_cluster import KafkaCluster
from fault_drill.config import DrillConfig
from fault_drill.faults import Component, Fault
from fault_drill.journal import Journal, Result

REPLICATION_FACTOR = 3
MIN_INSYNC_REPLICAS = 2
TRANSACTION_STATE = "__transaction_state"
_POLL_S = 0.5
RESUMED_ACKS = 20
"""Acknowledgements of commands sent after a broker's kill that show writes go on without it."""


def cluster_env(cluster: KafkaCluster) -> dict[str, str]:
    """What the Ledger processes need to write to and read from the cluster."""
    return {
        "LEDGER_KAFKA_BOOTSTRAP_SERVERS": cluster.bootstrap_servers,
        "LEDGER_MIN_REPLICATION_FACTOR": str(REPLICATION_FACTOR),
        "LEDGER_MIN_INSYNC_REPLICAS": str(MIN_INSYNC_REPLICAS),
    }


def cluster_component(name: str, cluster: KafkaCluster, topic: str) -> Component:
    """The cluster as one component: healthy once every broker is up and every replica of the
    event topic and of the transaction log is in sync."""

    def healthy() -> bool:
        if not all(node.is_running() for node in cluster.nodes):
            return False
        try:
            return cluster.fully_replicated([topic, TRANSACTION_STATE])
        except Exception:
            return False

    return Component(name, cluster, cluster.nodes[0].log_file, healthy)


class LeaderKill:
    """SIGKILL of the broker leading most of the topic's partitions (never the one killed the
    time before); it stays down at least `broker_down_s` and until writes went on without it
    (the other two keep a quorum and the in-sync minimum: a fault failure if they do not), then
    starts again; ready once every replica of the topic and of the transaction log is in sync.
    """

    def __init__(
        self, cluster: KafkaCluster, topic: str, journal: Journal, config: DrillConfig
    ) -> None:
        self._cluster = cluster
        self._topic = topic
        self._clock = self._journal = journal
        self._config = config
        self._rng = random.Random(f"{config.seed}/leader-broker")
        self._previous: int | None = None

    async def due(self) -> None:
        return None

    async def __call__(self, fault: Fault) -> None:
        leaders = await asyncio.to_thread(self._cluster.leaders, self._topic)
        node_id = self._victim(leaders)
        fault.notes["node"] = node_id
        fault.notes["partitions_led"] = sum(1 for led in leaders.values() if led == node_id)
        node = self._cluster.node(node_id)
        await asyncio.to_thread(node.kill)
        killed = self._clock.now()
        up_at = killed + self._rng.uniform(*self._config.broker_down_s)
        deadline = killed + self._config.healthy_deadline_s
        while self._acks_since(killed) < RESUMED_ACKS:
            if self._clock.now() > deadline:
                fault.failures.append(f"writes did not go on with broker {node_id} down")
                break
            await asyncio.sleep(_POLL_S)
        else:
            fault.notes["writes_went_on_after_s"] = round(self._clock.now() - killed, 2)
        await asyncio.sleep(max(0.0, up_at - self._clock.now()))
        fault.notes["down_s"] = round(self._clock.now() - killed, 2)
        try:
            await asyncio.to_thread(node.start)
        except StackError as exc:
            fault.start_failures.append(str(exc)[:400])
            fault.failures.append(f"broker {node_id} did not start again: {exc}"[:400])
            return
        deadline = time.monotonic() + self._config.healthy_deadline_s
        topics = [self._topic, TRANSACTION_STATE]
        while not await asyncio.to_thread(self._cluster.fully_replicated, topics):
            if time.monotonic() > deadline:
                fault.failures.append(f"broker {node_id}'s replicas did not come back in sync")
                return
            await asyncio.sleep(_POLL_S)
        fault.ready_at = self._clock.now()

    def _acks_since(self, moment: float) -> int:
        return sum(
            1
            for record in self._journal
            for attempt in record.attempts
            if attempt.result is Result.ACK and attempt.started >= moment
        )

    def _victim(self, leaders: dict[int, int]) -> int:
        """The broker leading the most partitions, other than the one killed the time before."""
        counts = Counter(led for led in leaders.values() if led > 0)
        candidates = [n.node_id for n in self._cluster.nodes if n.node_id != self._previous]
        victim = max(candidates, key=lambda node_id: counts[node_id])
        self._previous = victim
        return victim


async def restore(cluster: KafkaCluster) -> None:
    """Start every broker a failed drill left down."""
    for node in cluster.nodes:
        if not node.is_running():
            await asyncio.to_thread(node.start)
