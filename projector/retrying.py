"""Retrying what fails for a while and then works again: PostgreSQL restarting, a deadlock
victim, Kafka briefly unreachable for dead letters. Everything else fails at once."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

import asyncpg

from projector.dead_letters import DeadLetterFailed

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.exceptions.OperatorInterventionError,
    asyncpg.exceptions.TransactionRollbackError,
    asyncpg.exceptions.TooManyConnectionsError,
    # What asyncpg raises when the server dies under a connection in mid-transaction.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.InterfaceError,
    DeadLetterFailed,
)
"""Errors after which the same operation may well succeed. Batches are safe to retry: nothing
of a failed transaction commits, and a committed one is skipped by its checkpoint."""


class Stopped(Exception):
    """Gave up retrying because the process is shutting down."""


async def retrying(
    what: str,
    operation: Callable[[], Awaitable[T]],
    stopping: Callable[[], bool],
    *,
    first_delay: float = 0.1,
    max_delay: float = 5.0,
) -> T:
    """`await operation()` until it returns, retrying transient errors with a growing delay.

    Raises Stopped if `stopping()` turns true while waiting to retry.
    """
    delay = first_delay
    while True:
        try:
            return await operation()
        except TRANSIENT_ERRORS as error:
            if stopping():
                raise Stopped(f"stopped while retrying {what}") from error
            log.warning("%s failed (%r); retrying in %.1fs", what, error, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, max_delay)
