"""What this process knows of the projector's checkpoints, and who is waiting for them to move.

Fed by the one LISTEN connection (and by direct reads of the checkpoints table); every waiter of
the process (queries with a consistency token, WatchAccount streams) registers here instead of
listening on its own connection. Everything here runs on the event loop: no locks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from types import MappingProxyType

from ledger.consistency import ConsistencyToken
from query_server.errors import Unavailable


class ShuttingDown(Unavailable):
    """The server is stopping; nothing that waits for the read model will be woken any more."""

    def __init__(self) -> None:
        super().__init__("the query server is shutting down; retry on another instance")


class Checkpoints:
    """A lower bound of the committed checkpoints (last applied offset per partition).

    Only ever advanced: a NOTIFY or a read of the table reports a checkpoint that is committed,
    and the projector's checkpoints never go back, so anything a waiter is told is covered is
    visible to every query started afterwards.
    """

    def __init__(self) -> None:
        self._known: dict[int, int] = {}
        # Waiters are filed under one partition their token is not yet covered on, so an
        # advance only looks at the waiters it may concern.
        self._waiting: dict[int, dict[asyncio.Future[None], ConsistencyToken]] = {}
        self._closed = False
        self.listening = False
        """Set by the LISTEN connection while it is up and has read the table since it last
        (re)connected: then every committed checkpoint reaches `advance`, at the latest when its
        NOTIFY arrives."""

    @property
    def known(self) -> Mapping[int, int]:
        return MappingProxyType(self._known)

    def advance(self, checkpoints: Mapping[int, int]) -> None:
        """Merge reported checkpoints; wake the waiters they cover."""
        moved = []
        for partition, offset in checkpoints.items():
            if offset > self._known.get(partition, -1):
                self._known[partition] = offset
                moved.append(partition)
        for partition in moved:
            waiters = self._waiting.pop(partition, None)
            for future, token in (waiters or {}).items():
                self._file(future, token)

    def register(self, token: ConsistencyToken) -> asyncio.Future[None]:
        """A future that completes once `token` is covered (at once if it already is).

        The caller must `discard` it when it stops waiting, whatever the outcome.
        """
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if self._closed:
            future.set_exception(ShuttingDown())
        else:
            self._file(future, token)
        return future

    def discard(self, future: asyncio.Future[None]) -> None:
        for waiters in self._waiting.values():
            if waiters.pop(future, None) is not None:
                return

    async def wait(self, token: ConsistencyToken) -> None:
        """Wait, without a time limit, until `token` is covered."""
        future = self.register(token)
        try:
            await future
        finally:
            self.discard(future)

    def close(self) -> None:
        """Fail every present and future waiter with ShuttingDown."""
        self._closed = True
        waiting, self._waiting = self._waiting, {}
        for waiters in waiting.values():
            for future in waiters:
                if not future.done():
                    future.set_exception(ShuttingDown())

    def _file(self, future: asyncio.Future[None], token: ConsistencyToken) -> None:
        if future.done():  # cancelled by its waiter meanwhile
            return
        for partition, offset in token.positions.items():
            if self._known.get(partition, -1) < offset:
                self._waiting.setdefault(partition, {})[future] = token
                return
        future.set_result(None)
