"""The process's one LISTEN connection: projector NOTIFYs on `ledger_checkpoints` feed
`Checkpoints`, which wakes every waiting query and follower of this process.

The payload, and why what it reports is visible to any query started after it arrives:
ledger/read_model_contract.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]

from ledger.backoff import Backoff
from ledger.database_access import DatabaseAccess
from ledger.read_model_contract import NOTIFY_CHANNEL as CHANNEL
from ledger.read_model_contract import MalformedNotification, parse_notification
from query_server.checkpoints import Checkpoints
from query_server.connections import session_settings

log = logging.getLogger(__name__)

_FIRST_BACKOFF_SECONDS = 0.1
_MAX_BACKOFF_SECONDS = 5.0
_PING_INTERVAL_SECONDS = 15.0
_PING_TIMEOUT_SECONDS = 5.0


class CheckpointListener:
    """Keeps one connection LISTENing, reconnecting when it breaks.

    After every (re)connection it reads the checkpoints table once, since NOTIFYs sent while
    nobody listened are lost. `on_connected(True/False)` reports whether it is listening.
    """

    def __init__(
        self,
        database: DatabaseAccess,
        topic: str,
        checkpoints: Checkpoints,
        read_checkpoints: Callable[[], Awaitable[Mapping[int, int]]],
        on_connected: Callable[[bool], Awaitable[None]],
    ) -> None:
        self._database = database
        self._topic = topic
        self._checkpoints = checkpoints
        self._read_checkpoints = read_checkpoints
        self._on_connected = on_connected
        self._rereads: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        """Listen until cancelled."""
        backoff = Backoff(_FIRST_BACKOFF_SECONDS, _MAX_BACKOFF_SECONDS)
        while True:
            try:
                connection = await asyncpg.connect(
                    **self._database.connect_args(), server_settings=session_settings(), timeout=10
                )
            except (OSError, TimeoutError, asyncpg.PostgresError) as exc:
                log.warning(
                    "cannot connect to listen on %s (retrying): %s",
                    CHANNEL,
                    self._database.scrub(str(exc)),
                )
                await asyncio.sleep(backoff.next())
                continue
            try:
                closed = asyncio.Event()
                connection.add_termination_listener(_setter(closed))
                await connection.add_listener(CHANNEL, self._on_notify)
                self._checkpoints.advance(await self._read_checkpoints())
                self._checkpoints.listening = True
                await self._on_connected(True)
                log.info("listening on %s", CHANNEL)
                backoff.reset()
                await self._until_closed(connection, closed)
                log.warning("lost the connection listening on %s; reconnecting", CHANNEL)
            except Exception as exc:
                # Unavailable from reading the checkpoints, or the connection failing midway.
                self._checkpoints.listening = False
                log.warning("listening on %s failed (retrying): %s", CHANNEL, exc)
                await asyncio.sleep(backoff.next())
            finally:
                self._checkpoints.listening = False
                connection.terminate()
                await self._on_connected(False)

    async def _until_closed(self, connection: Any, closed: asyncio.Event) -> None:
        """Return when the connection closes. A connection that silently died (no FIN from a
        vanished host) would never say so, and NOTIFYs would stop with nobody noticing: an idle
        connection is pinged so that its death shows within seconds."""
        while True:
            try:
                await asyncio.wait_for(closed.wait(), _PING_INTERVAL_SECONDS)
                return
            except TimeoutError:
                await connection.fetchval("SELECT 1", timeout=_PING_TIMEOUT_SECONDS)

    def _on_notify(self, _connection: Any, _pid: int, _channel: str, payload: str) -> None:
        try:
            reported = parse_notification(payload, self._topic)
        except MalformedNotification as exc:
            # Something changed, but we cannot tell what: the table can.
            log.warning("unexpected notification on %s (%s); reading checkpoints", CHANNEL, exc)
            task = asyncio.get_running_loop().create_task(self._reread())
            self._rereads.add(task)
            task.add_done_callback(self._rereads.discard)
            return
        if reported is not None:
            self._checkpoints.advance(reported)

    async def _reread(self) -> None:
        try:
            self._checkpoints.advance(await self._read_checkpoints())
        except Exception as exc:
            log.warning("reading the checkpoints failed: %s", exc)


def _setter(event: asyncio.Event) -> Callable[[object], None]:
    """A termination listener for asyncpg that sets `event`."""
    return lambda _connection: event.set()
