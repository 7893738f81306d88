"""The /metrics endpoint of the gRPC servers: prometheus_client's HTTP server, in a thread.

`LEDGER_METRICS_ADDR` (host:port) says where it listens. Each process has its own default so
that all of them run side by side on one machine, as `make run` does:

| process        | /metrics at                                                             |
| -------------- | ----------------------------------------------------------------------- |
| command server | `LEDGER_METRICS_ADDR`, default 127.0.0.1:9101                            |
| query server   | `LEDGER_METRICS_ADDR`, default 127.0.0.1:9102                            |
| projector      | its status endpoint `LEDGER_PROJECTOR_HTTP` (default 127.0.0.1:9464)     |

(A supervised projector's worker i serves on `LEDGER_PROJECTOR_HTTP`'s port + i.)

Metrics never take the ledger down: an address that is malformed or already taken is logged as
an error, and the process serves on without /metrics.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import REGISTRY, CollectorRegistry, start_http_server

log = logging.getLogger(__name__)

METRICS_ADDR = "LEDGER_METRICS_ADDR"
COMMAND_SERVER_METRICS_ADDR = "127.0.0.1:9101"
QUERY_SERVER_METRICS_ADDR = "127.0.0.1:9102"


class MetricsExporter:
    """A running /metrics endpoint."""

    def __init__(self, server: WSGIServer, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        host, port = server.socket.getsockname()[:2]
        self.address = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        """Where it listens, as host:port (the real port when asked for port 0)."""

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join()


def start_metrics_exporter(
    default_address: str,
    *,
    env: Mapping[str, str] | None = None,
    registry: CollectorRegistry = REGISTRY,
) -> MetricsExporter | None:
    """Serve `registry` on `LEDGER_METRICS_ADDR` (or `default_address`); None if that fails."""
    env = os.environ if env is None else env
    address = env.get(METRICS_ADDR) or default_address
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 <= int(port) < 65536:
        log.error("%s must be host:port, got %r; serving without /metrics", METRICS_ADDR, address)
        return None
    try:
        # [::1]:9101 is how one writes an IPv6 address with a port; the socket wants ::1.
        server, thread = start_http_server(int(port), host.strip("[]"), registry)
    except OSError as error:
        log.error(
            "cannot serve /metrics on %s (%s: %s); serving without it",
            address,
            METRICS_ADDR,
            error.strerror or error,
        )
        return None
    exporter = MetricsExporter(server, thread)
    log.info("metrics on http://%s/metrics", exporter.address)
    return exporter
