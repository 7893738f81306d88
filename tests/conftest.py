"""Fixtures shared by the whole suite: one real local stack per test session."""

from __future__ import annotations

import os
from collections.abc import Iterator

# Before anything imports grpc: with fork support on, grpc's fork handlers can crash a child
# that the tests fork (PostgreSQL is started with `user=`, which forks) while calls are in flight.
os.environ.setdefault("GRPC_ENABLE_FORK_SUPPORT", "false")

import pytest

from devstack import LocalStack, StackPorts


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalStack]:
    """Kafka, the schema registry and PostgreSQL, started once on free ports in a temp dir.

    Jars come from the shared cache (LEDGER_CACHE_DIR, default .cache/), so only the very first
    run downloads them. Tests may stop, kill and restart components, but must leave them running
    and ready. Data and logs stay in pytest's temp dir for post-mortems.
    """
    with LocalStack(tmp_path_factory.mktemp("stack"), StackPorts.free()) as local_stack:
        yield local_stack
