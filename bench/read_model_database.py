"""The read model's database as the benchmarks see it: made fresh per scenario, and watched
until the projector's checkpoints cover the end of a topic."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Mapping
from contextlib import AbstractAsyncContextManager

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from devstack import LocalStack
from devstack.databases import scratch_database
from ledger.read_model_contract import SCHEMA as SCHEMA


def fresh_database(stack: LocalStack, purpose: str) -> AbstractAsyncContextManager[str]:
    """An empty database (the projector migrates it on start); yields its URL, drops it after."""
    return scratch_database(stack, f"bench_{purpose}_{uuid.uuid4().hex[:8]}")


async def checkpoints(connection: asyncpg.Connection, topic: str) -> dict[int, int]:
    """The projector's last applied offset per partition; empty until it has migrated."""
    try:
        rows = await connection.fetch(
            f"SELECT partition, last_offset FROM {SCHEMA}.checkpoints WHERE topic = $1", topic
        )
    except asyncpg.UndefinedTableError:
        return {}
    return {int(row["partition"]): int(row["last_offset"]) for row in rows}


def covers(seen: Mapping[int, int], last_offsets: Mapping[int, int]) -> bool:
    return all(seen.get(partition, -1) >= last for partition, last in last_offsets.items())


async def wait_covered(
    database_url: str,
    topic: str,
    last_offsets: Mapping[int, int],
    *,
    timeout_s: float,
    poll_s: float = 0.05,
) -> float:
    """Wait until the checkpoints cover `last_offsets` (each partition's last record); returns
    the monotonic time at which that was first seen. Raises TimeoutError."""
    deadline = time.monotonic() + timeout_s
    connection = await asyncpg.connect(database_url)
    try:
        while True:
            if covers(await checkpoints(connection, topic), last_offsets):
                return time.monotonic()
            if time.monotonic() > deadline:
                seen = await checkpoints(connection, topic)
                raise TimeoutError(
                    f"checkpoints {dict(sorted(seen.items()))} did not reach "
                    f"{dict(sorted(last_offsets.items()))} within {timeout_s:.0f}s"
                )
            await asyncio.sleep(poll_s)
    finally:
        await connection.close()
