"""Fixtures of the projector's tests: per test, a topic, a database and projector processes."""

from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import pytest

from devstack.ledger_services import LedgerService
from devstack.ports import LOOPBACK, free_ports_in_a_row
from devstack.stack import LocalStack
from tests.integration.projector.event_log import unique_id


@pytest.fixture
def topic() -> str:
    return f"events_{unique_id()}"


@pytest.fixture
async def database(stack: LocalStack) -> AsyncIterator[str]:
    name = f"projector_{unique_id()}"
    admin = await asyncpg.connect(stack.postgres.url("postgres"))
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield stack.postgres.url(name)
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def db(database: str) -> AsyncIterator[Any]:
    connection = await asyncpg.connect(database, server_settings={"search_path": "ledger"})
    yield connection
    await connection.close()


@pytest.fixture
def projectors(
    stack: LocalStack, topic: str, database: str, tmp_path: Path
) -> Iterator[Callable[..., LedgerService]]:
    """Makes projector processes for the test's topic, database and consumer group."""
    made: list[LedgerService] = []
    group = f"read_model_{unique_id()}"

    def make(name: str = "projector", workers: int = 1, **env: str) -> LedgerService:
        """A projector; with `workers` > 1, a supervisor of that many (worker i serves its
        status on the service's address with port + i)."""
        service = LedgerService.projector(
            stack,
            tmp_path,
            topic=topic,
            http=f"{LOOPBACK}:{free_ports_in_a_row(workers)}",
            name=name,
            extra_env={
                "LEDGER_DATABASE_URL": database,
                "LEDGER_PROJECTOR_GROUP": group,
                # The broker's minimum: a SIGKILLed instance's partitions move on within 6 s.
                "LEDGER_PROJECTOR_SESSION_TIMEOUT_MS": "6000",
                "LEDGER_PROJECTOR_WORKERS": str(workers),
                **env,
            },
        )
        made.append(service)
        return service

    yield make
    for service in made:
        service.stop()
