"""The command server's composition root: wires settings, Kafka, the registry and gRPC together."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
import time
from datetime import timedelta

from command_server.event_store import AppendFailed, Fenced, UnreadableLog
from command_server.forwarding import Forwarder, open_peer_channels
from command_server.group_commit import GroupCommitter
from command_server.routing import Router
from command_server.servicer import CommandServicer
from command_server.settings import Settings
from command_server.shards import Shard
from command_server.topic import UnsafeTopic
from command_server.writer.handle import WriterLost, WriterProcess
from ledger.auth.settings import ServerSecurity
from ledger.environment import SettingsError
from ledger.events.schema_store import IncompatibleSchema
from ledger.grpc_server import LedgerServer, stop_on_signals
from ledger.telemetry.exporter import COMMAND_SERVER_METRICS_ADDR, start_metrics_exporter
from ledger.telemetry.logs import configure_logging
from ledger.telemetry.metrics import CommandMetrics, GrpcServerMetrics
from ledger.v1 import commands_pb2, commands_pb2_grpc

log = logging.getLogger("command_server")

SERVICE_NAME = commands_pb2.DESCRIPTOR.services_by_name["CommandService"].full_name
EXIT_FENCED = 3
EXIT_WRITER_LOST = 1
EXIT_BROKEN = 1


async def serve(settings: Settings, security: ServerSecurity) -> int:
    """Serve until SIGTERM/SIGINT (returns 0) or until fenced by another instance (returns 3)."""
    stopping = stop_on_signals()
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

    def on_writer_lost(exc: WriterLost) -> None:
        nonlocal exit_code
        log.critical("the event-store writer process stopped unexpectedly; stopping: %s", exc)
        exit_code = EXIT_WRITER_LOST
        stopping.set()

    def on_broken(why: str) -> None:
        nonlocal exit_code
        log.critical(
            "the writer cannot tell what the event log holds any more; stopping (a restart "
            "rebuilds the state from the log): %s",
            why,
        )
        exit_code = EXIT_BROKEN
        stopping.set()

    health_changes: set[asyncio.Task[None]] = set()

    def on_health(serving: bool) -> None:
        # Health follows whether Kafka takes commits (the committer hears it from the writer).
        if stopping.is_set():
            return
        task = asyncio.create_task(server.serving(serving))
        health_changes.add(task)
        task.add_done_callback(health_changes.discard)

    servicer = CommandServicer(
        timedelta(seconds=settings.command_id_max_skew_seconds), settings.transfer_wait_seconds
    )
    server = LedgerServer(
        SERVICE_NAME,
        servicer,
        commands_pb2_grpc.add_CommandServiceServicer_to_server,
        settings.listen,
        GrpcServerMetrics.create(),
        security,
        limits=settings.server_limits,
    )
    metrics = start_metrics_exporter(COMMAND_SERVER_METRICS_ADDR)
    # Only once the port is ours: the writer fences any other instance of this shard. It starts
    # now so that its interpreter start-up overlaps ours.
    started = time.monotonic()
    writer = WriterProcess(settings)
    writer.start()
    # Health and reflection answer (NOT_SERVING) while the state is rebuilt.
    await server.start()
    log.info("listening on %s; rebuilding shard %s", settings.listen, settings.transactional_id)

    try:
        rebuilt = await writer.rebuilt()
    except BaseException:
        await writer.stop()
        raise
    shard = Shard(settings.shard_index, settings.shard_count, rebuilt.partitions)
    log.info(
        "rebuilt %d accounts from %d events of partitions %s in %.2fs",
        rebuilt.accounts,
        rebuilt.events,
        shard.owned_partitions,
        time.monotonic() - started,
    )
    committer = GroupCommitter(
        writer,
        shard,
        max_commands=settings.batch_max_commands,
        max_wait_ms=settings.batch_max_wait_ms,
        ahead_commands=settings.batch_ahead_commands,
        max_queued=settings.queue_max_commands,
        retry_after_ms=settings.queue_retry_after_ms,
        on_fenced=on_fenced,
        on_writer_lost=on_writer_lost,
        on_broken=on_broken,
        on_health=on_health,
        metrics=CommandMetrics.create(),
        transfer_waiters_max=settings.transfer_waiters_max,
    )
    commit_loop = asyncio.create_task(committer.run(), name="group-commit")
    servicer.committer = committer
    forwarder = _forwarder(settings, shard)
    servicer.forwarder = forwarder
    await server.serving(True)
    log.info("serving ledger.v1.CommandService on %s", settings.listen)

    await stopping.wait()
    await server.serving(False)
    # Calls in flight wait on the commit loop, so it runs until the server has answered them.
    await server.stop(settings.grace_seconds)
    await committer.close()
    await commit_loop
    if forwarder is not None:
        await forwarder.close()
    # The writer flushes and closes its producer before it exits.
    await writer.stop()
    if metrics is not None:
        metrics.close()
    log.info("stopped after %d batches, %d commands", committer.batches, committer.commands)
    return exit_code


def _forwarder(settings: Settings, shard: Shard) -> Forwarder | None:
    """Forwarding to the other shards, with a channel to each (one shard, or no
    LEDGER_COMMAND_PEERS: None)."""
    peers = settings.peers
    if shard.count == 1 or not peers.forwarding:
        return None
    limits = settings.server_limits
    # A forwarded call is at most what this shard took in, and the owner takes the same.
    options = (
        ("grpc.max_send_message_length", limits.max_receive_bytes),
        ("grpc.max_receive_message_length", limits.max_send_bytes),
    )
    channels = open_peer_channels(peers, shard.index, options)
    log.info(
        "forwarding commands of other shards to %s",
        ", ".join(f"shard {p.index} at {p.address}" for p in channels.values()),
    )
    return Forwarder(
        Router(shard),
        channels,
        max_in_flight=peers.max_in_flight,
        timeout_seconds=peers.timeout_seconds,
        retry_after_ms=settings.queue_retry_after_ms,
    )


def main() -> None:
    configure_logging("command-server")
    try:
        settings = Settings.from_env()
        security = ServerSecurity.from_env(os.environ, settings.listen, "LEDGER_COMMAND_ADDR")
        sys.exit(asyncio.run(serve(settings, security)))
    except (SettingsError, UnsafeTopic, AppendFailed, UnreadableLog, IncompatibleSchema) as exc:
        log.critical("cannot start: %s", exc)
        sys.exit(2)
