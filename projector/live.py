"""`python -m projector` (run): keep the read model up to date until told to stop.

The consumer thread (feed.py) drives: it hands each batch to the event loop, where it is applied
in one PostgreSQL transaction (batch.py), decodes and projects the next one meanwhile
(prediction.py), and waits for the commit before it hands over another batch.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import sys
from collections.abc import Collection, Coroutine, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from http import HTTPStatus
from typing import Any, TypeVar

from prometheus_client import REGISTRY

from ledger.events.codec import EventCodec
from ledger.telemetry.metrics import ProjectorCollector, exposition
from projector.batch import BatchResult
from projector.consumed import ConsumedRecord, UndecodableRecord
from projector.dead_letters import DeadLetterQueue
from projector.feed import Feed
from projector.http_endpoint import HttpEndpoint, Response
from projector.prediction import Prediction, apply_predicted
from projector.reads import read_checkpoints
from projector.retrying import retrying
from projector.settings import Settings
from projector.status import Status

log = logging.getLogger(__name__)

T = TypeVar("T")

_HEALTH_QUERY_TIMEOUT = 2.0
_SWITCH_INTERVAL_S = 0.0005


class LiveProjector:
    """Wires the feed, the database pool, the dead-letter queue and the HTTP endpoint."""

    def __init__(
        self,
        settings: Settings,
        pool: Any,
        codec: EventCodec,
        dead_letters: DeadLetterQueue,
        consumer_config: Mapping[str, Any],
    ) -> None:
        self._settings = settings
        self._pool = pool
        self._dead_letters = dead_letters
        self._status = Status(settings.topic)
        self._feed = Feed(
            consumer_config,
            settings.topic,
            codec,
            settings.batch_max_events,
            apply_batch=self._apply_started,
            read_checkpoints=self._checkpoints_blocking,
            status=self._status,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        # One thread is the consumer's for the whole run; the other flushes dead letters.
        self._executor = ThreadPoolExecutor(max_workers=2, thread_name_prefix="projector")

    async def run(self, supervisor_gone: asyncio.Event) -> None:
        """Project until SIGTERM/SIGINT or `supervisor_gone` (returns), or a failure (raises,
        e.g. Contradiction)."""
        self._loop = asyncio.get_running_loop()
        # The consumer thread decodes and projects the next batch while this loop feeds
        # PostgreSQL the current one; each time the loop's socket I/O releases the interpreter
        # lock it waits up to the switch interval to get it back, and PostgreSQL waits with it.
        sys.setswitchinterval(_SWITCH_INTERVAL_S)
        for signum in (signal.SIGTERM, signal.SIGINT):
            self._loop.add_signal_handler(signum, self._stop, signum)
        endpoint = HttpEndpoint(
            {"/healthz": self._healthz, "/status": self._report, "/metrics": self._metrics}
        )
        collector = ProjectorCollector(self._status.report)
        REGISTRY.register(collector)
        await endpoint.start(self._settings.http.host, self._settings.http.port)
        log.info(
            "projecting %s into schema %s; status on http://%s/status",
            self._settings.topic,
            self._settings.schema,
            self._settings.http,
        )
        watcher = asyncio.create_task(self._stop_when(supervisor_gone))
        try:
            await self._loop.run_in_executor(self._executor, self._feed.run)
        finally:
            watcher.cancel()
            REGISTRY.unregister(collector)
            await endpoint.close()
            await self._loop.run_in_executor(self._executor, self._dead_letters.close)
            self._executor.shutdown()

    async def _metrics(self) -> Response:
        body, content_type = exposition()
        return Response(HTTPStatus.OK, body, content_type)

    async def _stop_when(self, supervisor_gone: asyncio.Event) -> None:
        await supervisor_gone.wait()
        self._feed.stop()

    def _stop(self, signum: int) -> None:
        log.info("%s: finishing the current batch, then stopping", signal.Signals(signum).name)
        self._feed.stop()

    # Called on the consumer thread: run on the event loop and wait for the result.
    def _on_loop(self, coroutine: Coroutine[Any, Any, T]) -> T:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(coroutine, self._loop).result()

    def _apply_started(
        self, records: Sequence[ConsumedRecord], prediction: Prediction | None
    ) -> Future[BatchResult]:
        assert self._loop is not None
        return asyncio.run_coroutine_threadsafe(self._apply(records, prediction), self._loop)

    def _checkpoints_blocking(self, partitions: Collection[int]) -> Mapping[int, int]:
        return self._on_loop(self._checkpoints(partitions))

    async def _apply(
        self, records: Sequence[ConsumedRecord], prediction: Prediction | None
    ) -> BatchResult:
        async def attempt() -> BatchResult:
            async with self._pool.acquire() as connection:
                return await apply_predicted(
                    connection,
                    self._settings.topic,
                    records,
                    self._publish_dead_letters,
                    prediction,
                )

        result = await retrying("applying a batch", attempt, lambda: self._feed.stopping)
        self._status.committed(result.checkpoints, result.applied, result.dead_letters)
        if result.dead_letters:
            log.error(
                "%d undecodable records sent to %s", result.dead_letters, self._dead_letters.topic
            )
        return result

    async def _publish_dead_letters(self, records: Sequence[UndecodableRecord]) -> None:
        for record in records:
            log.error(
                "undecodable record at %s partition %d offset %d: %s",
                self._settings.topic,
                record.partition,
                record.offset,
                record.error,
            )
        await asyncio.get_running_loop().run_in_executor(
            self._executor, self._dead_letters.publish, records
        )

    async def _checkpoints(self, partitions: Collection[int]) -> Mapping[int, int]:
        async def attempt() -> Mapping[int, int]:
            async with self._pool.acquire() as connection:
                checkpoints = await read_checkpoints(connection, self._settings.topic)
            return {p: checkpoints[p] for p in partitions if p in checkpoints}

        return await retrying("reading checkpoints", attempt, lambda: self._feed.stopping)

    async def _healthz(self) -> Response:
        if not self._status.consuming:
            return Response.json(HTTPStatus.SERVICE_UNAVAILABLE, {"status": "not consuming"})
        try:
            async with asyncio.timeout(_HEALTH_QUERY_TIMEOUT), self._pool.acquire() as connection:
                await connection.fetchval("SELECT 1")
        except Exception as error:
            # The body is for anyone who can reach the port: the kind of failure only, the
            # driver's message (scrubbed) goes to the log.
            log.warning(
                "health check: the database is unreachable: %s",
                self._settings.database.scrub(repr(error)),
            )
            return Response.json(
                HTTPStatus.SERVICE_UNAVAILABLE,
                {"status": "database unreachable", "error": type(error).__name__},
            )
        return Response.json(HTTPStatus.OK, {"status": "ok"})

    async def _report(self) -> Response:
        return Response.json(HTTPStatus.OK, self._status.report())
