"""Throw-away databases on the stack's PostgreSQL, one per test, drill or benchmark run."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from devstack.postgres_roles import PROJECTOR_ROLE
from devstack.stack import LocalStack


async def create_database(stack: LocalStack, name: str) -> str:
    """An empty database named `name` (the projector migrates it on start); returns its URL."""
    await _admin(stack, f'CREATE DATABASE "{name}"')
    # The projector's role creates the read model's schema in it (secure_environment).
    await _admin(stack, f'GRANT CREATE ON DATABASE "{name}" TO {PROJECTOR_ROLE}')
    return str(stack.postgres.url(name))


async def drop_database(stack: LocalStack, name: str) -> None:
    """Drop `name` (a database name or its URL), even with sessions still connected."""
    await _admin(stack, f'DROP DATABASE IF EXISTS "{name.rsplit("/", 1)[-1]}" WITH (FORCE)')


@asynccontextmanager
async def scratch_database(stack: LocalStack, name: str) -> AsyncIterator[str]:
    """`create_database`, dropped again when the block ends."""
    url = await create_database(stack, name)
    try:
        yield url
    finally:
        await drop_database(stack, name)


async def _admin(stack: LocalStack, statement: str) -> None:
    admin = await asyncpg.connect(stack.database_url)
    try:
        await admin.execute(statement)
    finally:
        await admin.close()
