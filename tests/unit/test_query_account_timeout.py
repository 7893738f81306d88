"""A GetAccount statement that times out takes its connection down with it.

asyncpg cancels a timed-out statement and, on release, waits for the server to confirm the
cancel on the same connection; on a broken connection that never comes. The connection is
terminated instead, so the calls get UNAVAILABLE after the statement's timeout, not the pool's.
"""

from __future__ import annotations

from types import TracebackType
from typing import Any

import pytest

from query_server.errors import Unavailable
from query_server.queries import ReadModel


class Connection:
    def __init__(self) -> None:
        self.terminated = False
        self.timeouts: list[float | None] = []

    async def fetchrow(self, *args: Any, **options: Any) -> Any:
        self.timeouts.append(options.get("timeout"))
        raise TimeoutError

    async def fetch(self, *args: Any, **options: Any) -> Any:
        self.timeouts.append(options.get("timeout"))
        raise TimeoutError

    def terminate(self) -> None:
        self.terminated = True


class Pool:
    """Hands out one connection; `released` says whether it came back."""

    def __init__(self) -> None:
        self.connection = Connection()
        self.released = False

    def get_max_size(self) -> int:
        return 4

    def acquire(self) -> Pool:
        return self

    async def __aenter__(self) -> Connection:
        return self.connection

    async def __aexit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.released = True


@pytest.mark.parametrize("ids", [["a"], ["a", "b"]])
async def test_a_statement_that_times_out_terminates_its_connection(ids: list[str]) -> None:
    pool = Pool()
    read_model = ReadModel(pool, "events")

    with pytest.raises(Unavailable, match="did not answer in time"):
        await read_model._accounts_by_id(ids)

    assert pool.connection.terminated
    assert pool.released
    assert pool.connection.timeouts == [5.0]
