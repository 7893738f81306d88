"""Fixtures of the query server's tests: per module, a topic, a migrated database, a query
server on them, a client and a ReadModelWriter."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Iterator

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import grpc
import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from devstack.databases import drop_database
from devstack.ledger_services import LedgerService
from devstack.stack import LocalStack
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.integration.query_server.read_model_writer import (
    ReadModelWriter,
    create_read_model_database,
)


@pytest.fixture(scope="module")
def topic(stack: LocalStack) -> str:
    """The module's event topic; it exists in Kafka (3 partitions) only for the watermarks."""
    name = f"qs_events_{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(name, 3, 1)])[name].result(timeout=30)
    return name


@pytest.fixture(scope="module")
async def database_url(stack: LocalStack) -> AsyncIterator[str]:
    url = await create_read_model_database(stack, migrate=True)
    yield url
    await drop_database(stack, url)


@pytest.fixture(scope="module")
def query_server_env() -> dict[str, str]:
    """The query server's settings; a module may override this fixture with its own."""
    # Keeps the test of a call without a deadline short.
    return {"LEDGER_QUERY_DEFAULT_WAIT_SECONDS": "1"}


@pytest.fixture(scope="module")
def query_server(
    stack: LocalStack,
    database_url: str,
    topic: str,
    query_server_env: dict[str, str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[LedgerService]:
    service = LedgerService.query_server(
        stack,
        tmp_path_factory.mktemp("query-server"),
        topic=topic,
        database_url=database_url,
        extra_env=query_server_env,
    )
    service.start()
    yield service
    service.stop()


@pytest.fixture(scope="module")
async def client(query_server: LedgerService) -> AsyncIterator[pb_grpc.QueryServiceAsyncStub]:
    async with grpc.aio.insecure_channel(query_server.address) as channel:
        yield pb_grpc.QueryServiceStub(channel)


@pytest.fixture(scope="module")
async def writer(database_url: str, topic: str) -> AsyncIterator[ReadModelWriter]:
    connection = await asyncpg.connect(database_url, server_settings={"search_path": "ledger"})
    yield ReadModelWriter(connection, topic)
    await connection.close()
