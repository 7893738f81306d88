"""The command server's composition root: wires settings, Kafka, the registry and gRPC together."""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from typing import TypeAlias

import grpc
from confluent_kafka.admin import AdminClient
from confluent_kafka.schema_registry import SchemaRegistryClient
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from command_server.event_store import AppendFailed, EventStore, Fenced
from command_server.group_commit import GroupCommitter
from command_server.servicer import CommandServicer
from command_server.settings import Settings, SettingsError
from command_server.shards import Shard
from command_server.topic import UnsafeTopic, ensure_event_topic
from command_server.write_model import WriteModel
from ledger.events.codec import EventCodec
from ledger.events.schema_store import ConfluentSchemaStore
from ledger.reflection import documented_pool
from ledger.v1 import commands_pb2, commands_pb2_grpc

log = logging.getLogger("command_server")

SERVICE_NAME = commands_pb2.DESCRIPTOR.services_by_name["CommandService"].full_name
EXIT_FENCED = 3

_ServingStatus: TypeAlias = health_pb2.HealthCheckResponse.ServingStatus.ValueType


class _Health:
    def __init__(self) -> None:
        self.servicer = health.aio.HealthServicer()

    async def set(self, status: _ServingStatus) -> None:
        await self.servicer.set("", status)
        await self.servicer.set(SERVICE_NAME, status)


def _connect(settings: Settings) -> tuple[EventStore, Shard]:
    """Blocking start-up: topic, schema, and fencing of any zombie of our shard."""
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap})
    partitions = ensure_event_topic(admin, settings.topic, settings.partitions)
    if partitions != settings.partitions:
        log.warning(
            "topic %s has %d partitions (LEDGER_PARTITIONS=%d); using the topic's count",
            settings.topic,
            partitions,
            settings.partitions,
        )
    codec = EventCodec(ConfluentSchemaStore(SchemaRegistryClient({"url": settings.registry_url})))
    codec.register(settings.topic)
    store = EventStore(settings.kafka_bootstrap, settings.topic, settings.transactional_id, codec)
    store.open()
    return store, Shard(settings.shard_index, settings.shard_count, partitions)


async def serve(settings: Settings) -> int:
    """Serve until SIGTERM/SIGINT (returns 0) or until fenced by another instance (returns 3)."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    exit_code = 0

    def on_fenced(exc: Fenced) -> None:
        nonlocal exit_code
        log.critical(
            "shard %s was taken over by another instance; stopping: %s",
            settings.transactional_id,
            exc,
        )
        exit_code = EXIT_FENCED
        stopping.set()

    health_status = _Health()
    servicer = CommandServicer()
    server = grpc.aio.server()
    commands_pb2_grpc.add_CommandServiceServicer_to_server(servicer, server)
    health_pb2_grpc.add_HealthServicer_to_server(health_status.servicer, server)
    reflection.enable_server_reflection(
        (SERVICE_NAME, health.SERVICE_NAME, reflection.SERVICE_NAME),
        server,
        pool=documented_pool(),
    )
    server.add_insecure_port(settings.listen)
    await health_status.set(health_pb2.HealthCheckResponse.NOT_SERVING)
    # Health and reflection answer (NOT_SERVING) while the state is rebuilt.
    await server.start()
    log.info("listening on %s; rebuilding shard %s", settings.listen, settings.transactional_id)

    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="event-store")
    started = time.monotonic()
    store, shard = await loop.run_in_executor(executor, _connect, settings)
    model = WriteModel(settings.dedupe_window)
    replayed = await loop.run_in_executor(
        executor, store.replay, shard.owned_partitions, model.apply
    )
    log.info(
        "rebuilt %d accounts from %d events of partitions %s in %.2fs",
        len(model.accounts),
        replayed,
        shard.owned_partitions,
        time.monotonic() - started,
    )
    committer = GroupCommitter(
        model,
        store,
        shard,
        executor,
        max_commands=settings.batch_max_commands,
        max_wait_ms=settings.batch_max_wait_ms,
        on_fenced=on_fenced,
    )
    commit_loop = asyncio.create_task(committer.run(), name="group-commit")
    servicer.committer = committer
    await health_status.set(health_pb2.HealthCheckResponse.SERVING)
    log.info("serving ledger.v1.CommandService on %s", settings.listen)

    await stopping.wait()
    await health_status.set(health_pb2.HealthCheckResponse.NOT_SERVING)
    # Calls in flight wait on the commit loop, so it runs until the server has answered them.
    await server.stop(settings.grace_seconds)
    await committer.close()
    await commit_loop
    await loop.run_in_executor(executor, store.close)
    executor.shutdown()
    log.info("stopped after %d batches, %d commands", committer.batches, committer.commands)
    return exit_code


def main() -> None:
    logging.basicConfig(
        level=os.environ.get("LEDGER_LOG_LEVEL", "INFO").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        settings = Settings.from_env()
        sys.exit(asyncio.run(serve(settings)))
    except (SettingsError, UnsafeTopic, AppendFailed) as exc:
        log.critical("cannot start: %s", exc)
        sys.exit(2)
