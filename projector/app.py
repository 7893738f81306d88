"""The projector's composition root: settings, PostgreSQL, Kafka and the registry wired together.

`python -m projector` (or `run`) projects until SIGTERM; `python -m projector rebuild` rebuilds
the read model from offset 0 and swaps it in. Exit codes: 0 done, 2 cannot start (bad settings),
3 an event contradicts the read model, 4 the rebuild failed (the live model is untouched).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence
from typing import Any

import asyncpg
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from ledger.events.codec import EventCodec
from ledger.events.schema_store import ConfluentSchemaStore
from ledger.telemetry.logs import configure_logging
from projector.dead_letters import DeadLetterQueue, ensure_dead_letter_topic
from projector.feed import FeedFailed, consumer_config
from projector.http_endpoint import CannotServe
from projector.live import LiveProjector
from projector.log_reader import LogReader
from projector.migrations import bundled, migrate
from projector.projection import Contradiction
from projector.rebuild import Rebuild, RebuildFailed
from projector.retrying import Stopped, retrying
from projector.settings import Settings, SettingsError
from projector.verification import VerificationFailed

log = logging.getLogger("projector")

EXIT_CANNOT_START = 2
EXIT_CONTRADICTION = 3
EXIT_REBUILD_FAILED = 4
SHADOW_SCHEMA = "ledger_rebuild"


def _server_settings(schema: str, application: str) -> dict[str, str]:
    return {"search_path": schema, "application_name": application}


class CannotStart(RuntimeError):
    """A dependency needed to start is unreachable or refuses us."""


async def _reading_codec(settings: Settings) -> EventCodec:
    codec = EventCodec(ConfluentSchemaStore.connect(settings.registry_url))
    # Registering is idempotent and tells the codec the id of the schema it reads with, so that
    # events written with that same schema are read directly into records without a registry
    # lookup; records written with other versions are resolved by fastavro.
    try:
        await codec.register_async(settings.topic)
    except Exception as error:
        raise CannotStart(
            f"registering the event schema at {settings.registry_url}: {error!r}"
        ) from error
    return codec


async def _connect_pool(settings: Settings) -> Any:
    async def connect() -> Any:
        return await asyncpg.create_pool(
            settings.database_url,
            min_size=1,
            # One for batches (and the checkpoint reads between them), one for health checks.
            max_size=2,
            server_settings=_server_settings(settings.schema, "ledger-projector"),
        )

    return await retrying("connecting to PostgreSQL", connect, lambda: False)


async def run(settings: Settings) -> int:
    pool = await _connect_pool(settings)
    try:
        async with pool.acquire() as connection:
            applied = await migrate(connection, settings.schema, bundled())
        if applied:
            log.info("applied migrations to schema %s: %s", settings.schema, ", ".join(applied))
        admin_config: dict[str, Any] = {
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
            settings.kafka_bootstrap, settings.topic, settings.dead_letter_topic
        )
        config = consumer_config(
            settings.kafka_bootstrap, settings.group_id, settings.session_timeout_ms
        )
        projector = LiveProjector(settings, pool, codec, dead_letters, config)
        try:
            await projector.run()
        except Contradiction as error:
            log.critical("projector stopped: %s", error)
            return EXIT_CONTRADICTION
        except FeedFailed as error:
            log.critical("projector stopped: %s", error)
            return 1
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


async def rebuild(settings: Settings, *, keep_old: bool) -> int:
    codec = await _reading_codec(settings)
    connection = await asyncpg.connect(
        settings.database_url,
        server_settings=_server_settings(SHADOW_SCHEMA, "ledger-projector-rebuild"),
    )
    reader = LogReader(
        consumer_config(settings.kafka_bootstrap, f"{settings.group_id}-rebuild"),
        settings.topic,
        codec,
        settings.batch_max_events,
    )
    try:
        report = await Rebuild(
            settings.topic, settings.schema, SHADOW_SCHEMA, bundled(), reader
        ).run(connection, keep_old=keep_old)
    except (RebuildFailed, VerificationFailed, Contradiction, TimeoutError) as error:
        log.critical(
            "rebuild failed, the live read model is untouched (the shadow stays in schema %s "
            "for inspection): %s",
            SHADOW_SCHEMA,
            error,
        )
        return EXIT_REBUILD_FAILED
    finally:
        await asyncio.to_thread(reader.close)
        await connection.close()
    log.info(
        "rebuilt %s: %d records, %d accounts, %d caught up at the swap%s",
        settings.schema,
        report.records,
        report.accounts,
        report.caught_up,
        f"; the old model is kept as {report.old_schema}" if report.old_schema else "",
    )
    return 0


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m projector",
        description="Project account events from Kafka into the PostgreSQL read model.",
    )
    commands = parser.add_subparsers(dest="command")
    commands.add_parser("run", help="consume and project until SIGTERM (the default)")
    rebuild_parser = commands.add_parser(
        "rebuild", help="replay the whole topic into a shadow schema, verify it and swap it in"
    )
    rebuild_parser.add_argument(
        "--keep-old", action="store_true", help="keep the replaced schema as ledger_old_<stamp>"
    )
    args = parser.parse_args(argv)
    configure_logging("projector")
    # The registry client logs every HTTP request at INFO.
    logging.getLogger("httpx2").setLevel(logging.WARNING)
    try:
        settings = Settings.from_env()
    except SettingsError as error:
        log.critical("cannot start: %s", error)
        sys.exit(EXIT_CANNOT_START)
    try:
        if args.command == "rebuild":
            sys.exit(asyncio.run(rebuild(settings, keep_old=args.keep_old)))
        sys.exit(asyncio.run(run(settings)))
    except CannotStart as error:
        log.critical("cannot start: %s", error)
        sys.exit(EXIT_CANNOT_START)
