"""Fixtures shared by the whole suite: one real local stack per test session, and a
three-broker Kafka for the modules that kill brokers."""

from __future__ import annotations

import os
from collections.abc import Iterator

# Before anything imports grpc: with fork support on, grpc's fork handlers can crash a child
# that the tests fork (PostgreSQL is started with `user=`, which forks) while calls are in flight.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import pytest

from devstack import LocalStack, StackPorts
from devstack.kafka_cluster import KafkaCluster


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Kafka, the schema registry and PostgreSQL, started once on free ports in a temp dir.

    Jars come from the shared cache (LEDGER_CACHE_DIR, default .cache/), so only the very first
    run downloads them. Tests may stop, kill and restart components, but must leave them running
    and ready. Data and logs stay in pytest's temp dir for post-mortems.
    """
    with LocalStack(tmp_path_factory.mktemp("stack"), StackPorts.free()) as local_stack:
        yield local_stack


@pytest.fixture(scope="module")
def kafka_cluster(
    stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[KafkaCluster]:
    """Three Kafka nodes on free ports in a temp dir, next to the session's single-node stack,
    for as long as the module that asks for them runs (three JVMs are too heavy to keep)."""
    with KafkaCluster(tmp_path_factory.mktemp("kafka-cluster"), stack.cache_dir) as started:
        yield started
