"""`python -m ledger.telemetry.probe grpc [--cacert CA.pem] HOST:PORT | http URL`: is the service
healthy?

The health check of the container images (compose.yaml), which have Python but neither grpcurl
nor curl. Exit status 0 when the gRPC server's grpc.health.v1 answers SERVING for the whole
server, or the URL answers 200; 1 otherwise, with the reason on stderr. With `--cacert` the
gRPC check speaks TLS trusting that CA (health needs no token).
"""

from __future__ import annotations

import argparse
import sys
import urllib.error
import urllib.request
from collections.abc import Sequence
from pathlib import Path

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

_TIMEOUT = 3.0


def grpc_serving(address: str, timeout: float = _TIMEOUT, cacert: Path | None = None) -> str | None:
    """None when the server at `address` is SERVING, otherwise why not; over TLS trusting
    `cacert` when given."""
    channel = (
        grpc.insecure_channel(address)
        if cacert is None
        else grpc.secure_channel(
            address, grpc.ssl_channel_credentials(root_certificates=cacert.read_bytes())
        )
    )
    with channel:
        try:
            reply = health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service=""), timeout=timeout
            )
        except grpc.RpcError as error:
            return f"health check of {address} failed: {error.code().name}"
    if reply.status != health_pb2.HealthCheckResponse.SERVING:
        return f"{address} is {health_pb2.HealthCheckResponse.ServingStatus.Name(reply.status)}"
    return None


def http_ok(url: str, timeout: float = _TIMEOUT) -> str | None:
    """None when `url` answers 200, otherwise why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            status = int(reply.status)
    except urllib.error.HTTPError as error:
        status = error.code
    except OSError as error:
        return f"{url}: {error}"
    return None if status == 200 else f"{url} answered {status}"


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m ledger.telemetry.probe", description=__doc__.splitlines()[0]
    )
    kinds = parser.add_subparsers(dest="kind", required=True)
    check = kinds.add_parser("grpc", help="grpc.health.v1 Check")
    check.add_argument("--cacert", type=Path, help="speak TLS, trusting this CA (PEM)")
    check.add_argument("address")
    kinds.add_parser("http", help="GET, expecting 200").add_argument("url")
    args = parser.parse_args(argv)
    if args.kind == "grpc":
        problem = grpc_serving(args.address, cacert=args.cacert)
    else:
        problem = http_ok(args.url)
    if problem is not None:
        print(problem, file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
