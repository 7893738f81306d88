"""The container health check: grpc.health.v1 and HTTP probes against real local servers."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from ledger.auth.local import ensure_local_credentials
from ledger.telemetry.probe import grpc_serving, http_ok, main


@pytest.fixture
def health_server() -> Iterator[tuple[str, health.HealthServicer]]:
    servicer = health.HealthServicer()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    yield f"127.0.0.1:{port}", servicer
    server.stop(0)


class _Status(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        self.send_response(200 if self.path == "/healthz" else 503)
        self.end_headers()

    def log_message(self, format: str, *args: object) -> None:
        pass  # keep the test output clean


@pytest.fixture
def http_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Status)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()
    thread.join()


def test_grpc_probe_passes_only_when_serving(
    health_server: tuple[str, health.HealthServicer], capsys: pytest.CaptureFixture[str]
) -> None:
    address, servicer = health_server
    servicer.set("", health_pb2.HealthCheckResponse.NOT_SERVING)
    assert grpc_serving(address) == f"{address} is NOT_SERVING"
    assert main(["grpc", address]) == 1
    assert "NOT_SERVING" in capsys.readouterr().err
    servicer.set("", health_pb2.HealthCheckResponse.SERVING)
    assert grpc_serving(address) is None
    assert main(["grpc", address]) == 0


def test_grpc_probe_speaks_tls_trusting_the_ca_it_is_given(tmp_path: Path) -> None:
    credentials = ensure_local_credentials(tmp_path / "credentials")
    servicer = health.HealthServicer()
    server = grpc.server(ThreadPoolExecutor(max_workers=2))
    health_pb2_grpc.add_HealthServicer_to_server(servicer, server)
    tls = grpc.ssl_server_credentials(
        [(credentials.server_key.read_bytes(), credentials.server_cert.read_bytes())]
    )
    address = f"127.0.0.1:{server.add_secure_port('127.0.0.1:0', tls)}"
    server.start()
    try:
        servicer.set("", health_pb2.HealthCheckResponse.SERVING)
        assert main(["grpc", "--cacert", str(credentials.ca), address]) == 0
        assert grpc_serving(address, timeout=1) is not None  # plaintext against TLS fails
    finally:
        server.stop(0)


def test_grpc_probe_fails_when_nothing_answers() -> None:
    problem = grpc_serving("127.0.0.1:1", timeout=1)
    assert problem is not None
    assert "UNAVAILABLE" in problem


def test_http_probe_wants_a_200(http_server: str) -> None:
    assert http_ok(f"{http_server}/healthz") is None
    assert main(["http", f"{http_server}/healthz"]) == 0
    assert http_ok(f"{http_server}/other") == f"{http_server}/other answered 503"
    assert main(["http", f"{http_server}/other"]) == 1
    assert http_ok("http://127.0.0.1:1/healthz") is not None
