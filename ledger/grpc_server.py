"""A Ledger gRPC server, set up the same way for every service.

Each composition root adds its own servicer (which only translates between protobuf and the
domain) and gets the rest from here: per-method metrics, requests that cannot be decoded
refused, TLS and the authentication and authorization of every call (`ledger.auth`, as
`ServerSecurity` says) with those three in one wrapper per method (`ledger.call_wrapping`),
grpc.health.v1 for the whole server ("") and for the service by name, reflection that shows
the API's comments, the listening port, and the limits of what clients may take
(`ledger.server_limits`). Health answers NOT_SERVING from the moment the server starts until
the service says otherwise, so that a probe can tell "up but not ready" (rebuilding,
connecting) from "down".
"""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from ledger.auth.settings import ServerSecurity
from ledger.call_wrapping import method_wrapping
from ledger.reflection import documented_pool
from ledger.server_limits import ServerLimits
from ledger.telemetry.metrics import GrpcServerMetrics

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING

_Servicer = TypeVar("_Servicer")


def stop_on_signals() -> asyncio.Event:
    """An event that SIGTERM or SIGINT sets: how every server learns it is to stop."""
    loop = asyncio.get_running_loop()
    stopping = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stopping.set)
    return stopping


class LedgerServer:
    """A grpc.aio server bound to `listen` with one Ledger service, health and reflection."""

    def __init__(
        self,
        service_name: str,
        servicer: _Servicer,
        add_servicer: Callable[[_Servicer, grpc.aio.Server], None],
        listen: str,
        metrics: GrpcServerMetrics,
        security: ServerSecurity,
        options: Sequence[tuple[str, Any]] = (),
        limits: ServerLimits = ServerLimits(),  # noqa: B008 (frozen, so safe to share)
    ) -> None:
        self.service_name = service_name
        # One interceptor and one wrapper per method for metrics, decoding and authorization:
        # each layer more costs every call a coroutine (ledger/call_wrapping.py).
        self.server = grpc.aio.server(
            interceptors=[method_wrapping(metrics, security.verifier)],
            options=(*limits.options(), *options),
            maximum_concurrent_rpcs=limits.max_concurrent_calls,
        )
        add_servicer(servicer, self.server)
        self._health = health.aio.HealthServicer()
        health_pb2_grpc.add_HealthServicer_to_server(self._health, self.server)
        reflection.enable_server_reflection(
            (service_name, health.SERVICE_NAME, reflection.SERVICE_NAME),
            self.server,
            pool=documented_pool(),
        )
        self.port = (
            self.server.add_insecure_port(listen)
            if security.credentials is None
            else self.server.add_secure_port(listen, security.credentials)
        )
        """The port bound (the real one when `listen` asks for port 0)."""

    async def start(self) -> None:
        """Accept calls; health says NOT_SERVING until `serving(True)`."""
        await self.serving(False)
        await self.server.start()

    async def serving(self, ready: bool) -> None:
        """What health answers, for the whole server and for the service by name."""
        status = SERVING if ready else NOT_SERVING
        await self._health.set("", status)
        await self._health.set(self.service_name, status)

    async def stop(self, grace_seconds: float) -> None:
        """Refuse new calls; those in flight may finish for up to `grace_seconds`."""
        await self.server.stop(grace_seconds)
