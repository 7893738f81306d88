"""A replicated Kafka for the tests that need one: three KRaft nodes, each broker and controller.

The session's local stack keeps its single node (fast to start, enough for everything else);
broker fail-over tests start one of these next to it, on free ports in a temp dir. Same jars,
same node settings as the single node, but: one cluster id and a static quorum of every node
(`controller.quorum.voters`), internal and new topics replicated to every node with
`min.insync.replicas` one less, and unclean leader election off.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from devstack.errors import StackError
from devstack.java import java_executable
from devstack.kafka import KAFKA_MIN_JAVA, Kafka, Membership, new_cluster_id
from devstack.maven import KAFKA_VERSION, kafka_libs
from devstack.parallel import in_parallel
from devstack.ports import LOOPBACK, free_ports

if TYPE_CHECKING:
    from confluent_kafka.admin import AdminClient

# Three JVMs share two cores with the rest of the stack: half the single node's heap each.
NODE_HEAP = "384m"


class KafkaCluster:
    """`size` Kafka nodes (node ids 1..size) with data in `<data_dir>/node-<id>`.

    Nodes can be killed and started on their own (`node(id)`); `start()` and `stop()` act on
    all of them.
    """

    name = "kafka-cluster"

    def __init__(
        self,
        data_dir: Path,
        cache_dir: Path,
        *,
        size: int = 3,
        heap: str = NODE_HEAP,
        ready_timeout: float = 120.0,
    ) -> None:
        if size < 3:
            raise ValueError("a replicated cluster needs at least 3 nodes (min ISR 2)")
        self.data_dir = data_dir.absolute()
        self._cancel = threading.Event()
        self.ready_timeout = ready_timeout
        ports = free_ports(2 * size)
        controllers = {node_id: ports[2 * node_id - 1] for node_id in range(1, size + 1)}
        voters = ",".join(f"{node_id}@{LOOPBACK}:{port}" for node_id, port in controllers.items())
        cluster_id = self._cluster_id()
        self.nodes = tuple(
            Kafka(
                self.data_dir / f"node-{node_id}",
                ports[2 * node_id - 2],
                controller_port,
                cache_dir=cache_dir,
                membership=Membership(node_id, cluster_id, voters, size, size - 1),
                heap=heap,
                ready_timeout=ready_timeout,
                cancel=self._cancel,
            )
            for node_id, controller_port in controllers.items()
        )
        self.cache_dir = cache_dir
        self._admin: AdminClient | None = None

    @property
    def bootstrap_servers(self) -> str:
        """Every node's plaintext listener, so that clients find the cluster with any node down."""
        return ",".join(node.bootstrap_servers for node in self.nodes)

    def node(self, node_id: int) -> Kafka:
        return self.nodes[node_id - 1]

    def is_running(self) -> bool:
        return any(node.is_running() for node in self.nodes)

    def start(self) -> None:
        """Start every node at once (a node waits for a quorum of the others before it serves),
        then wait until each is registered as a broker."""
        java_executable(KAFKA_MIN_JAVA, f"Kafka {KAFKA_VERSION}")
        kafka_libs(self.cache_dir)
        self._cancel.clear()
        try:
            in_parallel(*(node.start for node in self.nodes), cancel=self._cancel)
            self.wait_for_brokers(len(self.nodes))
        except BaseException:
            self._cancel.set()
            self.kill()
            raise

    def stop(self) -> None:
        """Stop every node cleanly, all at once: one after the other, the last node would wait
        for a quorum that is already gone until its stop times out."""
        in_parallel(*(node.stop for node in self.nodes))

    def kill(self) -> None:
        for node in self.nodes:
            node.kill()

    def wait_for_brokers(self, count: int, timeout: float | None = None) -> None:
        """Wait until `count` brokers are registered (alive and unfenced)."""
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        deadline = time.monotonic() + (timeout or self.ready_timeout)
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        seen = 0
        while time.monotonic() < deadline:
            try:
                seen = len(admin.list_topics(timeout=2.0).brokers)
            except KafkaException:
                seen = 0
            if seen >= count:
                return
            time.sleep(0.2)
        raise StackError(
            f"the Kafka cluster in {self.data_dir} has {seen} of {count} brokers after "
            f"{timeout or self.ready_timeout:.0f}s; logs: {self.data_dir}/node-*/kafka.log"
        )

    def admin(self) -> AdminClient:
        """One admin client for every question asked of the cluster (polled often by the fault
        drill: a client per question would be a new connection to every node each time)."""
        if self._admin is None:
            from confluent_kafka.admin import AdminClient

            self._admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        return self._admin

    def leaders(self, topic: str) -> dict[int, int]:
        """The node id leading each partition of `topic` (-1: none right now)."""
        metadata = self.admin().list_topics(topic=topic, timeout=10).topics[topic]
        return {number: p.leader for number, p in metadata.partitions.items()}

    def busiest_leader(self, topic: str) -> int:
        """The node that leads the most partitions of `topic`."""
        counts = Counter(leader for leader in self.leaders(topic).values() if leader > 0)
        if not counts:
            raise StackError(f"no partition of {topic!r} has a leader")
        return counts.most_common(1)[0][0]

    def fully_replicated(self, topics: list[str]) -> bool:
        """Whether every partition of `topics` has all its replicas in sync."""
        metadata = self.admin().list_topics(timeout=10).topics
        return all(
            topic in metadata
            and all(len(p.isrs) == len(p.replicas) for p in metadata[topic].partitions.values())
            for topic in topics
        )

    def _cluster_id(self) -> str:
        """The cluster's id, kept next to the nodes so that a restart finds the same one."""
        path = self.data_dir / "cluster-id"
        if path.is_file():
            return path.read_text().strip()
        self.data_dir.mkdir(parents=True, exist_ok=True)
        cluster_id = new_cluster_id()
        path.write_text(cluster_id + "\n")
        return cluster_id

    def __enter__(self) -> KafkaCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
