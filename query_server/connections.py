"""The query server's connections to the read model: their session settings, the pool, and
what the database's failures mean to a caller (`Unavailable`, retryable)."""

from __future__ import annotations

from types import TracebackType
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from ledger.database_access import DatabaseAccess
from ledger.read_model_contract import SCHEMA
from query_server.errors import Unavailable

_CONNECTION_ERRORS = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    # What asyncpg raises when the server dies under a connection in use.
    asyncpg.exceptions.InternalClientError,
    asyncpg.exceptions.InterfaceError,
    # 57xxx: admin/crash shutdown, cannot connect now, statement cancelled.
    asyncpg.OperatorInterventionError,
    # 53xxx: too many connections, out of memory or disk.
    asyncpg.InsufficientResourcesError,
    # When (re)connecting: the database is gone.
    asyncpg.InvalidCatalogNameError,
)
_REFUSED_ERRORS = (
    # The role or its password is wrong (InvalidPasswordError is one of them).
    asyncpg.InvalidAuthorizationSpecificationError,
)
_NOT_INITIALISED_ERRORS = (asyncpg.UndefinedTableError, asyncpg.InvalidSchemaNameError)


class Refused(Unavailable):
    """PostgreSQL refuses the role or its password."""


class _Translated:
    """Turns the database's failures into Unavailable; a stateless, reusable context manager
    (cheaper per call than a generator-based one).

    The messages name the kind of failure, never the driver's own text: they reach callers."""

    def __enter__(self) -> None:
        return None

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if isinstance(error, TimeoutError):
            raise Unavailable(
                "the read model did not answer in time; it may be overloaded or a connection "
                "to it broken"
            ) from error
        if isinstance(error, _REFUSED_ERRORS):
            raise Refused(f"refuses the query server's role ({type(error).__name__})") from error
        if isinstance(error, _CONNECTION_ERRORS):
            raise Unavailable(
                f"the read model cannot be reached ({type(error).__name__})"
            ) from error
        if isinstance(error, _NOT_INITIALISED_ERRORS):
            raise Unavailable(
                "the read model is not initialised yet (has the projector run?)"
            ) from error


translated = _Translated()
"""`with translated:` around a statement turns the database's failures into Unavailable."""


async def _keep_session(connection: object) -> None:
    """Our statements leave no session state behind (no SET, LISTEN, cursors or locks), so the
    pool's default reset, an extra round trip on every release, is skipped."""


async def open_pool(database: DatabaseAccess, pool_size: int) -> Any:
    """A pool of `pool_size` connections to the read model, with `session_settings`."""
    with translated:
        return await asyncpg.create_pool(
            **database.connect_args(),
            min_size=pool_size,
            max_size=pool_size,
            # Connections are only replaced when they break: recycling would cost a
            # reconnect and re-preparing every statement in the middle of the load.
            max_queries=2**62,
            max_inactive_connection_lifetime=0,
            reset=_keep_session,
            server_settings=session_settings(),
            timeout=10,
            command_timeout=30,
        )


def session_settings() -> dict[str, str]:
    """Settings of every connection of the query server."""
    return {
        "search_path": SCHEMA,
        # A second guard besides our own code: the query server never writes.
        "default_transaction_read_only": "on",
        # Our statements are small indexed reads; JIT compilation would only add latency.
        "jit": "off",
        "application_name": "ledger-query-server",
    }
