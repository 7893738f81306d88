"""The three Ledger processes, started for a test module on the session's stack.

Each module gets its own event topic and read-model database, so that what it writes (the
README's fixed account ids, say) meets nothing another module wrote. The gRPC servers get
/metrics on free ports, so that they collide neither with each other nor with `make run`.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

import asyncpg  # type: ignore[import-untyped, unused-ignore]
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient, NewTopic

from command_server.topic import REQUIRED_CONFIG, verify_retention
from devstack.ledger_services import LedgerService
from devstack.ports import LOOPBACK, free_port
from devstack.stack import LocalStack

PROMPTLY_S = 10.0


@dataclass(frozen=True)
class RunningLedger:
    command_server: LedgerService
    projector: LedgerService
    query_server: LedgerService
    command_metrics: str
    query_metrics: str
    topic: str
    database_url: str


@asynccontextmanager
async def running_ledger(
    stack: LocalStack, data_dir: Path, *, extra_env: Mapping[str, str] | None = None
) -> AsyncIterator[RunningLedger]:
    """Command server, projector and query server, started in that order (as `make run` does)
    with `extra_env` added to each one's environment, and stopped in reverse."""
    topic = f"eco_events_{uuid.uuid4().hex[:8]}"
    _create_event_topic(stack, topic)
    database_url = await _create_database(stack)
    command_metrics = f"{LOOPBACK}:{free_port()}"
    query_metrics = f"{LOOPBACK}:{free_port()}"
    env = dict(extra_env or {})
    ledger = RunningLedger(
        command_server=LedgerService.command_server(
            stack, data_dir, topic=topic, extra_env={**env, "LEDGER_METRICS_ADDR": command_metrics}
        ),
        projector=LedgerService.projector(
            stack, data_dir, topic=topic, extra_env={**env, "LEDGER_DATABASE_URL": database_url}
        ),
        query_server=LedgerService.query_server(
            stack,
            data_dir,
            topic=topic,
            database_url=database_url,
            extra_env={**env, "LEDGER_METRICS_ADDR": query_metrics},
        ),
        command_metrics=command_metrics,
        query_metrics=query_metrics,
        topic=topic,
        database_url=database_url,
    )
    started: list[LedgerService] = []
    try:
        for service in (ledger.command_server, ledger.projector, ledger.query_server):
            service.start()
            started.append(service)
        yield ledger
    finally:
        for service in reversed(started):
            service.stop()
        await _drop_database(stack, database_url)


def _create_event_topic(stack: LocalStack, name: str) -> None:
    """The command server's topic, created up front and polled until its configuration can be
    described: the command server checks that right after creating a topic itself, which can
    race the topic's propagation in the broker (UNKNOWN_TOPIC_OR_PART)."""
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(name, 6, 1, config=dict(REQUIRED_CONFIG))])[name].result(30)
    deadline = time.monotonic() + PROMPTLY_S
    while True:
        try:
            verify_retention(admin, name, timeout=5)
            return
        except KafkaException:
            assert time.monotonic() < deadline, f"topic {name} never became describable"
            time.sleep(0.1)


async def _create_database(stack: LocalStack) -> str:
    """An empty database for the read model (the projector migrates it); returns its URL."""
    name = f"eco_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(stack.database_url)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return str(stack.postgres.url(name))


async def _drop_database(stack: LocalStack, url: str) -> None:
    admin = await asyncpg.connect(stack.database_url)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{url.rsplit("/", 1)[1]}" WITH (FORCE)')
    finally:
        await admin.close()
