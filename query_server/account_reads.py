"""GetAccount reads that arrive while one is in flight go together in the next statement.

Under load most of a GetAccount's CPU in this process is gRPC's, and most of the rest is asyncpg
running one statement per call (a pool checkout, a round trip and its event-loop wake-ups).
Reading every account that is waiting with one statement spreads that over all of them. A read
that finds nothing in flight starts at once, so a lone call waits for nobody; the answers'
snapshot is that of the statement that read them, taken after each call arrived.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

ReadMany = Callable[[Sequence[str]], Awaitable[Sequence[Any]]]
"""Reads the given account ids: one result per id, in order."""

MOST_PER_STATEMENT = 256
"""Bounds one statement's size (and so its latency) when many calls are waiting."""


class CoalescedReads:
    """Hands `read` calls to `read_many` in batches: one batch in flight at a time, each taking
    every call that arrived while the one before it ran."""

    def __init__(self, read_many: ReadMany) -> None:
        self._read_many = read_many
        self._waiting: list[tuple[str, asyncio.Future[Any]]] = []
        self._reading: asyncio.Task[None] | None = None

    async def read(self, account_id: str) -> Any:
        """`read_many([account_id])[0]`, read together with the other calls waiting. Raises what
        the batch's statement raised."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((account_id, future))
        if self._reading is None:
            self._reading = asyncio.create_task(self._read_waiting())
        return await future

    async def _read_waiting(self) -> None:
        batch: list[tuple[str, asyncio.Future[Any]]] = []
        try:
            while self._waiting:
                batch = self._waiting[:MOST_PER_STATEMENT]
                del self._waiting[:MOST_PER_STATEMENT]
                # A caller that gave up (deadline, cancellation) is not read for.
                batch = [(account_id, future) for account_id, future in batch if not future.done()]
                if not batch:
                    continue
                try:
                    results = await self._read_many([account_id for account_id, _ in batch])
                    if len(results) != len(batch):
                        raise RuntimeError(f"{len(results)} results for {len(batch)} account ids")
                except Exception as error:
                    for _, future in batch:
                        if not future.done():
                            future.set_exception(error)
                    continue
                for (_, future), result in zip(batch, results, strict=True):
                    if not future.done():
                        future.set_result(result)
                batch = []
        finally:
            self._reading = None
            # Only if this task itself was cancelled (the server stopping): nobody is left
            # waiting for an answer that will not come.
            for _, future in [*batch, *self._waiting]:
                future.cancel()
            self._waiting.clear()
