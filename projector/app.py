"""The projector's composition root: settings, PostgreSQL, Kafka and the registry wired together.

`run` projects until SIGTERM; `rebuild` rebuilds the read model from offset 0 and swaps it in,
or (`--until`) builds it as of an instant into a schema of its own.
Both are started by `python -m projector` (cli.py), which with LEDGER_PROJECTOR_WORKERS > 1
supervises that many workers instead (supervisor.py), each of which runs `run`. Exit codes
(exit_codes.py): 0 done, 1 failed (a supervised worker kept failing, or the consumer failed),
2 cannot start, 3 an event contradicts the read model, 4 the rebuild failed (the live model is
untouched).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from datetime import datetime
from typing import Any, NoReturn

import asyncpg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from ledger.events.codec import EventCodec
from ledger.events.schema_store import ConfluentSchemaStore
from ledger.supervision import watch_parent_pipe
from projector.dead_letters import DeadLetterQueue, ensure_dead_letter_topic
from projector.exit_codes import (
    EXIT_CANNOT_START,
    EXIT_CONTRADICTION,
    EXIT_FAILED,
    EXIT_REBUILD_FAILED,
)
from projector.feed import FeedFailed, consumer_config
from projector.http_endpoint import CannotServe
from projector.live import LiveProjector
from projector.log_reader import LogReader
from projector.migrations import bundled, migrate
from projector.projection import Contradiction
from projector.rebuild import SHADOW_SCHEMA, Rebuild, RebuildFailed
from projector.rebuild_until import RebuildUntil, refusal
from projector.retrying import Stopped, retrying
from projector.settings import Settings
from projector.verification import VerificationFailed

log = logging.getLogger("projector")


def _server_settings(schema: str, application: str) -> dict[str, str]:
    return {"search_path": schema, "application_name": application}


class CannotStart(RuntimeError):
    """A dependency needed to start is unreachable or refuses us."""


async def _reading_codec(settings: Settings) -> EventCodec:
    codec = EventCodec(ConfluentSchemaStore.connect(settings.registry))
    # Registering is idempotent and tells the codec the id of the schema it reads with, so that
    # events written with that same schema are read directly into records without a registry
    # lookup; records written with other versions are resolved by fastavro.
    try:
        await codec.register_async(settings.topic)
    except Exception as error:
        message = settings.registry.scrub(f"{error!r}")
        raise CannotStart(
            f"registering the event schema at {settings.registry.url}: {message}"
        ) from error
    return codec


async def _connect_pool(settings: Settings, stopped: Callable[[], bool]) -> Any:
    async def connect() -> Any:
        return await asyncpg.create_pool(
            **settings.database.connect_args(),
            min_size=1,
            # One for batches (and the checkpoint reads between them), one for health checks.
            max_size=2,
            server_settings=_server_settings(settings.schema, "ledger-projector"),
        )

    try:
        return await retrying(
            f"connecting to PostgreSQL at {settings.database.display_url}", connect, stopped
        )
    except (
        asyncpg.InvalidAuthorizationSpecificationError,
        asyncpg.InvalidCatalogNameError,
    ) as error:
        # Refused (wrong role, password or database): retrying would not change that.
        raise CannotStart(
            f"PostgreSQL at {settings.database.display_url} refuses us: "
            f"{settings.database.scrub(str(error))} (check LEDGER_DATABASE_URL and "
            "LEDGER_DATABASE_PASSWORD)"
        ) from None


async def run(settings: Settings, parent_pipe: int | None = None) -> int:
    """Project until SIGTERM/SIGINT, or until `parent_pipe` (a supervisor's) closes."""
    supervisor_gone = asyncio.Event()
    if parent_pipe is not None:
        # From the start: an orphan must not go on waiting for PostgreSQL, or join the group.
        watch_parent_pipe(parent_pipe, supervisor_gone.set)
    try:
        pool = await _connect_pool(settings, supervisor_gone.is_set)
    except Stopped:
        return 0
    try:
        async with pool.acquire() as connection:
            applied = await migrate(
                connection, settings.schema, bundled(), reader_role=settings.reader_role
            )
        if applied:
            log.info("applied migrations to schema %s: %s", settings.schema, ", ".join(applied))
        admin_config: dict[str, Any] = {
            **settings.kafka_security.config(),
            "bootstrap.servers": settings.kafka_bootstrap,
            "logger": log,
        }
        admin = AdminClient(admin_config)
        try:
            await asyncio.to_thread(ensure_dead_letter_topic, admin, settings.dead_letter_topic)
        except KafkaException as error:
            log.critical("cannot start: creating %s: %s", settings.dead_letter_topic, error)
            return EXIT_CANNOT_START
        codec = await _reading_codec(settings)
        dead_letters = DeadLetterQueue(
            settings.kafka_bootstrap,
            settings.topic,
            settings.dead_letter_topic,
            settings.kafka_security,
        )
        config = consumer_config(
            settings.kafka_bootstrap,
            settings.group_id,
            settings.session_timeout_ms,
            settings.kafka_security,
        )
        if supervisor_gone.is_set():
            return 0
        projector = LiveProjector(settings, pool, codec, dead_letters, config)
        try:
            await projector.run(supervisor_gone)
        except Contradiction as error:
            log.critical("projector stopped: %s", error)
            return EXIT_CONTRADICTION
        except FeedFailed as error:
            log.critical("projector stopped: %s", error)
            return EXIT_FAILED
        except Stopped as error:
            # Told to stop while PostgreSQL was unreachable: the batch in hand never committed,
            # so the next start applies it.
            log.warning("stopped without committing the last batch: %s", error)
        except CannotServe as error:
            log.critical("cannot start: %s", error)
            return EXIT_CANNOT_START
        log.info("stopped")
        return 0
    finally:
        await pool.close()


async def _rebuild_connection(settings: Settings, schema: str) -> Any:
    try:
        return await asyncpg.connect(
            **settings.database.connect_args(),
            server_settings=_server_settings(schema, "ledger-projector-rebuild"),
        )
    except (OSError, asyncpg.PostgresError) as error:
        raise CannotStart(
            f"connecting to PostgreSQL at {settings.database.display_url}: "
            f"{settings.database.scrub(str(error))}"
        ) from None


def _rebuild_reader(settings: Settings, codec: EventCodec) -> LogReader:
    return LogReader(
        consumer_config(
            settings.kafka_bootstrap,
            f"{settings.group_id}-rebuild",
            security=settings.kafka_security,
        ),
        settings.topic,
        codec,
        settings.batch_max_events,
    )


@asynccontextmanager
async def _rebuilding(settings: Settings, schema: str) -> AsyncIterator[tuple[Any, LogReader]]:
    """A connection to `schema` and a reader of the topic, closed after."""
    codec = await _reading_codec(settings)
    connection = await _rebuild_connection(settings, schema)
    reader = _rebuild_reader(settings, codec)
    try:
        yield connection, reader
    finally:
        await asyncio.to_thread(reader.close)
        await connection.close()


_REBUILD_FAILURES = (RebuildFailed, VerificationFailed, Contradiction, TimeoutError)


async def rebuild(settings: Settings, *, keep_old: bool) -> int:
    async with _rebuilding(settings, SHADOW_SCHEMA) as (connection, reader):
        try:
            report = await Rebuild(
                settings.topic,
                settings.schema,
                SHADOW_SCHEMA,
                bundled(),
                reader,
                reader_role=settings.reader_role,
            ).run(connection, keep_old=keep_old)
        except _REBUILD_FAILURES as error:
            log.critical(
                "rebuild failed, the live read model is untouched (the shadow stays in schema "
                "%s for inspection): %s",
                SHADOW_SCHEMA,
                error,
            )
            return EXIT_REBUILD_FAILED
    log.info(
        "rebuilt %s: %d records, %d accounts, %d caught up at the swap%s",
        settings.schema,
        report.records,
        report.accounts,
        report.caught_up,
        f"; the old model is kept as {report.old_schema}" if report.old_schema else "",
    )
    return 0


async def rebuild_until(settings: Settings, until: datetime, schema: str) -> int:
    """The read model as of `until` in `schema` (rebuild_until.py); never swapped in."""
    refused = refusal(settings.schema, schema, until)
    if refused is not None:
        raise CannotStart(refused)
    async with _rebuilding(settings, schema) as (connection, reader):
        try:
            report = await RebuildUntil(
                settings.topic, schema, until, bundled(), reader, reader_role=settings.reader_role
            ).run(connection)
        except _REBUILD_FAILURES as error:
            log.critical(
                "rebuild as of %s failed (what was built stays in schema %s for inspection; "
                "the live read model is untouched): %s",
                until.isoformat(),
                schema,
                error,
            )
            return EXIT_REBUILD_FAILED
    log.info(
        "built the read model as of %s in schema %s: %d records read, %d events applied, "
        "%d accounts",
        until.isoformat(),
        schema,
        report.records,
        report.events,
        report.accounts,
    )
    return 0


def run_and_exit(settings: Settings, parent_pipe: int | None = None) -> NoReturn:
    """`run`, then exit with its code (cli.py; a supervised worker passes its pipe)."""
    _exit_with(run(settings, parent_pipe))


def rebuild_and_exit(settings: Settings, *, keep_old: bool) -> NoReturn:
    _exit_with(rebuild(settings, keep_old=keep_old))


def rebuild_until_and_exit(settings: Settings, until: datetime, schema: str) -> NoReturn:
    _exit_with(rebuild_until(settings, until, schema))


def _exit_with(command: Coroutine[Any, Any, int]) -> NoReturn:
    try:
        sys.exit(asyncio.run(command))
    except CannotStart as error:
        log.critical("cannot start: %s", error)
        sys.exit(EXIT_CANNOT_START)
