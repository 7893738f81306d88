"""The Prometheus metrics of the Ledger's processes.

Both gRPC servers count and time every call with `interceptor.MethodMetrics`, under the
names go-grpc-prometheus made common, so that stock dashboards and alerts apply as they are:

- `grpc_server_handled_total{grpc_type, grpc_service, grpc_method, grpc_code}`: on the command
  server, the commands by type (method) and result (status code: OK, FAILED_PRECONDITION for
  insufficient funds, ABORTED for a version conflict...);
- `grpc_server_handling_seconds{grpc_type, grpc_service, grpc_method}`: on the query server, the
  query latency by method (on the command server: the time a caller waits for its commit).

The command server adds its group commit (`CommandMetrics`); the projector exposes the progress
it already keeps in its status report (`ProjectorCollector`). Each process creates its metrics
once at start-up, in prometheus_client's default registry (which also has the process's CPU,
memory and GC), unless given another one or None (tests); nothing is registered at import.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Histogram,
    generate_latest,
)
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

# From half a millisecond (a cached read) to the 30 s a consistency-token wait may take.
LATENCY_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
)
# Up to a few times LEDGER_BATCH_MAX_COMMANDS' default of 1000.
BATCH_SIZE_BUCKETS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


@dataclass(frozen=True, slots=True)
class GrpcServerMetrics:
    """Calls handled by a gRPC server, by method and status code, and how long they took."""

    handled: Counter
    handling_seconds: Histogram

    @classmethod
    def create(cls, registry: CollectorRegistry | None = REGISTRY) -> GrpcServerMetrics:
        """Registered in `registry`; None: in none (nothing exports them)."""
        method = ("grpc_type", "grpc_service", "grpc_method")
        return cls(
            handled=Counter(
                "grpc_server_handled",
                "RPCs completed on the server, whatever their status.",
                (*method, "grpc_code"),
                registry=registry,
            ),
            handling_seconds=Histogram(
                "grpc_server_handling_seconds",
                "Time from the start of an RPC to its status (streams: the whole stream).",
                method,
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
        )


@dataclass(frozen=True, slots=True)
class CommandMetrics:
    """The command server's group commit: how many commands share a Kafka transaction, and how
    long the transaction takes."""

    batch_size: Histogram
    commit_seconds: Histogram
    aborted_batches: Counter

    @classmethod
    def create(cls, registry: CollectorRegistry | None = REGISTRY) -> CommandMetrics:
        """Registered in `registry`; None: in none (a GroupCommitter in a unit test)."""
        return cls(
            batch_size=Histogram(
                "ledger_command_batch_size",
                "Commands decided together in one group-commit batch.",
                buckets=BATCH_SIZE_BUCKETS,
                registry=registry,
            ),
            commit_seconds=Histogram(
                "ledger_command_commit_seconds",
                "Time from handing a batch to the event-store writer to its verdicts: deciding, "
                "appending to Kafka and committing the transaction.",
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            aborted_batches=Counter(
                "ledger_command_batches_aborted",
                "Batches whose transaction failed: every caller in them got an error.",
                registry=registry,
            ),
        )

    def observe_batch(self, commands: int) -> None:
        self.batch_size.observe(commands)

    def observe_commit(self, seconds: float) -> None:
        self.commit_seconds.observe(seconds)

    def count_aborted(self) -> None:
        self.aborted_batches.inc()


class ProjectorCollector(Collector):
    """The projector's progress, read from its status report whenever /metrics is scraped.

    `report` returns the document of the projector's /status endpoint: `topic`, `consuming`,
    `events_applied`, `dead_letters`, `batches`, and `partitions` mapping each partition to its
    `checkpoint`, `high_watermark` and `lag` (None while unknown). Reading it at scrape time
    keeps the numbers of /status and /metrics identical and costs the projector nothing.
    """

    def __init__(self, report: Callable[[], Mapping[str, Any]]) -> None:
        self._report = report

    def collect(self) -> Iterator[Metric]:
        report = self._report()
        topic = str(report["topic"])
        lag = GaugeMetricFamily(
            "ledger_projector_lag_offsets",
            "Offsets of the partition not yet applied to the read model.",
            labels=["topic", "partition"],
        )
        checkpoint = GaugeMetricFamily(
            "ledger_projector_checkpoint_offset",
            "Last offset of the partition applied to the read model.",
            labels=["topic", "partition"],
        )
        for partition, progress in report["partitions"].items():
            if progress["lag"] is not None:
                lag.add_metric([topic, str(partition)], progress["lag"])
            if progress["checkpoint"] is not None:
                checkpoint.add_metric([topic, str(partition)], progress["checkpoint"])
        yield lag
        yield checkpoint
        yield _counter(
            "ledger_projector_events_applied",
            "Events applied to the read model.",
            topic,
            report["events_applied"],
        )
        yield _counter(
            "ledger_projector_dead_letters",
            "Undecodable records sent to the dead-letter topic.",
            topic,
            report["dead_letters"],
        )
        yield _counter(
            "ledger_projector_batches",
            "Batches applied, each in one PostgreSQL transaction.",
            topic,
            report["batches"],
        )
        consuming = GaugeMetricFamily(
            "ledger_projector_consuming",
            "1 while the projector consumes its topic, 0 otherwise.",
            labels=["topic"],
        )
        consuming.add_metric([topic], 1 if report["consuming"] else 0)
        yield consuming


def _counter(name: str, documentation: str, topic: str, value: int) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=["topic"])
    family.add_metric([topic], value)
    return family


def exposition(registry: CollectorRegistry = REGISTRY) -> tuple[bytes, str]:
    """The registry's metrics in Prometheus' text format, and that format's content type."""
    return generate_latest(registry), CONTENT_TYPE_LATEST
