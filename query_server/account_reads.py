"""GetAccount reads that arrive while the statements allowed are in flight go together in the
next one.

Under load most of a GetAccount's CPU in this process is gRPC's, and most of the rest is asyncpg
running one statement per call (a pool checkout, a round trip and its event-loop wake-ups).
Reading every account that is waiting with one statement spreads that over all of them. A call
that finds a statement free starts one at once, so a lone call waits for nobody; the answers'
snapshot is that of the statement that read them, taken after each call arrived.

A statement that runs far longer than one should (stuck on a broken connection, say) stops
counting as in flight, so the next call to arrive starts a statement of its own for the calls
behind it instead of their waiting for its timeout. Checked as calls arrive, not by a timer per
statement: a timer costs more than the rest of a lone read's bookkeeping.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence
from typing import Any

from query_server.errors import Unavailable

ReadMany = Callable[[Sequence[str]], Awaitable[Sequence[Any]]]
"""Reads the given account ids: one result per id, in order."""

MOST_PER_STATEMENT = 256
"""Bounds one statement's size (and so its latency) when many calls are waiting."""

OVERDUE_AFTER_SECONDS = 0.25
"""A statement of a few hundred key lookups takes milliseconds, even on a loaded machine; one
that has run this long is presumed stuck."""

_Waiting = list[tuple[str, "asyncio.Future[Any]"]]


class CoalescedReads:
    """Hands `read` calls to `read_many` in batches, with up to `statements` of them in flight:
    each takes every call waiting when it starts. A statement in flight for `overdue_after`
    seconds no longer counts, but there are never more than `most_statements` (the pool's
    size: more would only queue for a connection)."""

    def __init__(
        self,
        read_many: ReadMany,
        statements: int = 1,
        most_statements: int | None = None,
        overdue_after: float = OVERDUE_AFTER_SECONDS,
    ) -> None:
        if statements < 1:
            raise ValueError(f"statements must be at least 1, not {statements}")
        self._read_many = read_many
        self._statements = statements
        self._most_statements = max(statements, most_statements or statements)
        self._overdue_after = overdue_after
        self._waiting: _Waiting = []
        self._readers: dict[asyncio.Task[None], _Waiting] = {}
        """Each reader task, with the batch it is reading."""
        self._in_flight_since: dict[asyncio.Task[None], float] = {}
        """When each reader's statement in flight started (event-loop time)."""

    async def read(self, account_id: str) -> Any:
        """`read_many([account_id])[0]`, read together with the other calls waiting. Raises what
        the batch's statement raised."""
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._waiting.append((account_id, future))
        if self._may_start_reader():
            self._start_reader()
        return await future

    def _may_start_reader(self) -> bool:
        readers = len(self._readers)
        if readers < self._statements:
            return True
        if readers >= self._most_statements:
            return False
        overdue_since = asyncio.get_running_loop().time() - self._overdue_after
        overdue = sum(started <= overdue_since for started in self._in_flight_since.values())
        return readers - overdue < self._statements

    def _start_reader(self) -> None:
        reader = asyncio.create_task(self._read_waiting())
        self._readers[reader] = []
        reader.add_done_callback(self._reader_done)

    async def _read_waiting(self) -> None:
        reader = asyncio.current_task()
        assert reader is not None
        while self._waiting:
            taken = self._waiting[:MOST_PER_STATEMENT]
            del self._waiting[:MOST_PER_STATEMENT]
            # A caller that gave up (deadline, cancellation) before its batch started is not
            # read for.
            batch = [(account_id, future) for account_id, future in taken if not future.done()]
            if not batch:
                continue
            self._readers[reader] = batch
            self._in_flight_since[reader] = asyncio.get_running_loop().time()
            try:
                results = await self._read_many([account_id for account_id, _ in batch])
                if len(results) != len(batch):
                    raise RuntimeError(f"{len(results)} results for {len(batch)} account ids")
            except Exception as error:
                _fail(batch, error)
                continue
            finally:
                del self._in_flight_since[reader]
            for (_, future), result in zip(batch, results, strict=True):
                if not future.done():
                    future.set_result(result)

    def _reader_done(self, reader: asyncio.Task[None]) -> None:
        batch = self._readers.pop(reader, [])
        if reader.cancelled():
            # The server is stopping: the calls it was reading get an answer, not a hang.
            _fail(batch, Unavailable("the query server is stopping"))
        elif (error := reader.exception()) is not None:
            _fail(batch, error)
        # Calls that arrived after its last look at the queue (or that it left when it ended
        # early) get a reader of their own.
        waiting = any(not future.done() for _, future in self._waiting)
        if waiting and self._may_start_reader():
            self._start_reader()


def _fail(batch: _Waiting, error: BaseException) -> None:
    for _, future in batch:
        if not future.done():
            future.set_exception(error)
