"""The query server's composition root: wires settings, PostgreSQL, Kafka and gRPC together."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sys

from prometheus_client import REGISTRY, CollectorRegistry

from ledger.auth.settings import ServerSecurity
from ledger.backoff import Backoff
from ledger.environment import SettingsError
from ledger.grpc_server import LedgerServer, stop_on_signals
from ledger.key_topic import KafkaKeyStore, key_topic_name, key_wrapper_from_file
from ledger.supervision import watch_parent_pipe
from ledger.telemetry.exporter import QUERY_SERVER_METRICS_ADDR, start_metrics_exporter
from ledger.telemetry.logs import configure_logging
from ledger.telemetry.metrics import GrpcServerMetrics
from ledger.v1 import queries_pb2, queries_pb2_grpc
from query_server.checkpoints import Checkpoints
from query_server.connections import Refused
from query_server.errors import Unavailable
from query_server.listener import CheckpointListener
from query_server.owners import Owners
from query_server.queries import ReadModel
from query_server.servicer import QueryServicer, ReadSide
from query_server.settings import Settings
from query_server.token_wait import TokenWaiter
from query_server.watch import Watchers
from query_server.watermarks import HighWatermarks

log = logging.getLogger("query_server")

SERVICE_NAME = queries_pb2.DESCRIPTOR.services_by_name["QueryService"].full_name

_FIRST_BACKOFF_SECONDS = 0.1
_MAX_BACKOFF_SECONDS = 5.0


async def _open_read_model(settings: Settings, stopping: asyncio.Event) -> ReadModel | None:
    """The pool, once PostgreSQL accepts connections; None if we are stopped first."""
    backoff = Backoff(_FIRST_BACKOFF_SECONDS, _MAX_BACKOFF_SECONDS)
    while not stopping.is_set():
        try:
            return await ReadModel.open(settings.database, settings.topic, settings.pool_size)
        except Refused:
            raise
        except Unavailable as exc:
            wait = backoff.next()
            log.warning("%s; retrying in %.1fs", exc.message, wait)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stopping.wait(), wait)
    return None


# Options of the gRPC server besides its limits (settings.server_limits). SO_REUSEPORT lets the
# workers bind one port, the kernel spreading connections (not calls) over them; it is also
# grpc's default, so one process behaves as before.
SERVER_OPTIONS = (("grpc.so_reuseport", 1),)


async def serve(
    settings: Settings,
    security: ServerSecurity,
    registry: CollectorRegistry = REGISTRY,
    *,
    export_metrics: bool = True,
    parent_pipe: int | None = None,
) -> int:
    """Serve until SIGTERM/SIGINT, with metrics in `registry` (exported on LEDGER_METRICS_ADDR
    if `export_metrics`). A worker is given `parent_pipe`, the read end of a pipe its supervisor
    holds open: when it reads end-of-file the supervisor is gone, and it stops as on SIGTERM."""
    loop = asyncio.get_running_loop()
    stopping = stop_on_signals()
    if parent_pipe is not None:
        watch_parent_pipe(parent_pipe, stopping.set)

    servicer = QueryServicer()
    server = LedgerServer(
        SERVICE_NAME,
        servicer,
        queries_pb2_grpc.add_QueryServiceServicer_to_server,
        settings.listen,
        GrpcServerMetrics.create(registry),
        security,
        options=SERVER_OPTIONS,
        limits=settings.server_limits,
    )
    metrics = (
        start_metrics_exporter(QUERY_SERVER_METRICS_ADDR, registry=registry)
        if export_metrics
        else None
    )
    # Health and reflection answer (NOT_SERVING) while we connect to the read model.
    await server.start()
    log.info("listening on %s; connecting to the read model", settings.listen)

    try:
        read_model = await _open_read_model(settings, stopping)
    except Refused as exc:
        # Retrying with the same role and password would be refused again.
        log.critical(
            "cannot start: PostgreSQL at %s %s; check LEDGER_DATABASE_URL and "
            "LEDGER_DATABASE_PASSWORD",
            settings.database.display_url,
            exc.message,
        )
        read_model, exit_code = None, 2
    else:
        exit_code = 0
    if read_model is None:
        await server.stop(0)
        if metrics is not None:
            metrics.close()
        return exit_code
    checkpoints = Checkpoints()
    watermarks = HighWatermarks(settings.kafka_bootstrap, settings.topic, settings.kafka_security)
    keys = _key_store(settings)
    servicer.read_side = ReadSide(
        read_model,
        checkpoints,
        TokenWaiter(
            checkpoints,
            read_model.checkpoints,
            settings.default_wait_seconds,
            max_wait_seconds=settings.max_wait_seconds,
            max_waiting=settings.max_waiting_calls,
        ),
        watermarks,
        Watchers(settings.max_watches),
        Owners(keys),
    )

    async def on_listening(listening: bool) -> None:
        # Without the LISTEN connection, reads with a consistency token would only time out.
        await server.serving(listening)
        if listening:
            log.info("serving ledger.v1.QueryService on %s", settings.listen)

    listener = CheckpointListener(
        settings.database, settings.topic, checkpoints, read_model.checkpoints, on_listening
    )
    listening = loop.create_task(listener.run(), name="checkpoint-listener")

    await stopping.wait()
    listening.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await listening
    await server.serving(False)
    # Followers would otherwise hold the server for the whole grace period.
    checkpoints.close()
    await server.stop(settings.grace_seconds)
    watermarks.close()
    if keys is not None:
        keys.close()
    await read_model.close()
    if metrics is not None:
        metrics.close()
    log.info("stopped")
    return 0


def _key_store(settings: Settings) -> KafkaKeyStore | None:
    """The account keys, if this server can read them (read lazily: the first sealed owner
    asked for reads the key topic)."""
    if settings.kafka_bootstrap is None or settings.key_encryption_key_file is None:
        log.warning(
            "no key store (LEDGER_KEY_ENCRYPTION_KEY_FILE and LEDGER_KAFKA_BOOTSTRAP_SERVERS "
            "are needed): sealed owners cannot be shown"
        )
        return None
    return KafkaKeyStore(
        settings.kafka_bootstrap,
        key_topic_name(settings.topic),
        key_wrapper_from_file(settings.key_encryption_key_file),
        settings.kafka_security,
    )


def settings_or_exit() -> tuple[Settings, ServerSecurity]:
    """The settings from the environment, after logging is configured; exit 2 if they are bad.
    A supervisor checks the security settings too, so that it fails as fast as a lone server."""
    configure_logging("query-server")
    try:
        settings = Settings.from_env()
        return settings, ServerSecurity.from_env(os.environ, settings.listen, "LEDGER_QUERY_ADDR")
    except SettingsError as exc:
        log.critical("cannot start: %s", exc)
        sys.exit(2)


def main() -> None:
    settings, security = settings_or_exit()
    if settings.workers == 1:
        sys.exit(asyncio.run(serve(settings, security)))
    # Imported here: a single-process server has no use for it.
    from query_server.supervisor import supervise

    sys.exit(asyncio.run(supervise(settings)))
