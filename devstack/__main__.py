"""`python -m devstack run|fetch`: the local stack from the command line (`make run`)."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import NoReturn

from devstack.credentials import local_credentials
from devstack.errors import StackError
from devstack.kafka import SCRAM_USER
from devstack.ledger_services import LedgerService
from devstack.locations import default_cache_dir, default_data_dir
from devstack.maven import fetch_all, is_cached
from devstack.passwords import password_file
from devstack.ports import StackPorts
from devstack.postgres_roles import ANALYST_ROLE, PROJECTOR_ROLE, READER_ROLE
from devstack.service import Service
from devstack.stack import LocalStack
from ledger.auth.local import LocalCredentials
from ledger.environment import HostPort, SettingsError, env_host_port, env_int
from ledger.read_model_contract import ANALYTICS_SCHEMA
from ledger.telemetry.exporter import COMMAND_SERVER_METRICS_ADDR

_WATCH_INTERVAL = 0.5
SHARD_PORT_STEP = 10
"""Shard i of `make run` listens on the first shard's port + 10·i (gRPC, and /metrics)."""
MAX_SHARDS = 6
"""The event topic's default partition count: no more shards than partitions."""
_METRICS = HostPort.parse("metrics", COMMAND_SERVER_METRICS_ADDR)


def _shard_port(first: HostPort, index: int) -> HostPort:
    return HostPort(first.host, first.port + SHARD_PORT_STEP * index)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack",
        description="Run the Ledger's local stack: Kafka, schema registry, PostgreSQL.",
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "run",
        help="start everything on the default ports (LEDGER_*_PORT) with data in "
        "LEDGER_DATA_DIR (default .data/); Ctrl-C stops it",
    )
    commands.add_parser(
        "fetch", help="only download Kafka and the registry into LEDGER_CACHE_DIR (.cache/)"
    )
    args = parser.parse_args(argv)
    try:
        if args.command == "fetch":
            return _fetch()
        return _run()
    except (StackError, SettingsError) as error:
        print(f"devstack: error: {error}", file=sys.stderr)
        return 1


def _ledger_services(stack: LocalStack, credentials: LocalCredentials) -> list[Service]:
    """The Ledger's own servers: started after the stack, in this order, and stopped before it.

    Each runs `python -m <package>` as it would in production: the gRPC servers serve TLS and
    require tokens (`credentials`), every service reaches Kafka through its SASL_SSL listener,
    and the projector and the query server log in to PostgreSQL as their own roles (the read
    model's owner, and one that may only read it). Ready when grpc.health.v1 says SERVING.
    LEDGER_COMMAND_SHARDS=N starts N command-server shards, shard i on LEDGER_COMMAND_ADDR's
    port + 10·i (50051, 50061, ...) and /metrics on 9101 + 10·i, each forwarding to the others.
    """
    first = env_host_port(os.environ, "LEDGER_COMMAND_ADDR", HostPort("127.0.0.1", 50051))
    shards = env_int(os.environ, "LEDGER_COMMAND_SHARDS", 1, minimum=1, maximum=MAX_SHARDS)
    projector_http = os.environ.get("LEDGER_PROJECTOR_HTTP") or "127.0.0.1:9464"
    query_addr = os.environ.get("LEDGER_QUERY_ADDR") or "127.0.0.1:50052"
    data_dir = stack.data_dir
    return [
        *LedgerService.command_shards(
            stack,
            data_dir,
            [str(_shard_port(first, i)) for i in range(shards)],
            secure=credentials,
            extra_env=lambda index: {
                **stack.secure_environment("command-server"),
                **({"LEDGER_METRICS_ADDR": str(_shard_port(_METRICS, index))} if index else {}),
            },
        ),
        LedgerService.projector(
            stack, data_dir, http=projector_http, extra_env=stack.secure_environment("projector")
        ),
        LedgerService.query_server(
            stack,
            data_dir,
            listen=query_addr,
            secure=credentials,
            extra_env=stack.secure_environment("query-server"),
        ),
    ]


def _fetch() -> int:
    cache_dir = default_cache_dir()
    if is_cached(cache_dir):
        print(f"devstack: Kafka and the registry are already in {_shown(cache_dir)}")
        return 0
    began = time.monotonic()
    fetch_all(cache_dir)
    print(f"devstack: fetched into {_shown(cache_dir)} in {time.monotonic() - began:.1f}s")
    return 0


def _interrupt(signum: int, frame: FrameType | None) -> NoReturn:
    raise KeyboardInterrupt


def _run() -> int:
    # SIGTERM (from a supervisor, `kill`) takes the same clean path as Ctrl-C; SIGINT is set
    # too because a shell starting us in the background would have us ignore it.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    stack = LocalStack(default_data_dir(), StackPorts.from_env())
    started: list[Service] = []
    try:
        print(
            f"devstack: starting Kafka, registry and PostgreSQL, data in {_shown(stack.data_dir)}"
        )
        began = time.monotonic()
        # Made on the first start (a CA, the servers' certificate, a signing key, tokens).
        credentials = local_credentials(stack.data_dir)
        stack.start()
        started.extend(stack.services)
        for service in _ledger_services(stack, credentials):
            service.start()
            started.append(service)
        print(f"devstack: ready in {time.monotonic() - began:.1f}s")
        for service in started:
            print(f"  {service.name:<16} {service.address:<48} log: {_shown(service.log_file)}")
        print(
            f"  the services use Kafka's SASL_SSL listener {stack.kafka.secure_bootstrap_servers}"
            f" (SCRAM user {SCRAM_USER}) and PostgreSQL as {PROJECTOR_ROLE} (projector) and"
            f" {READER_ROLE} (query server); passwords in {_shown(stack.kafka.data_dir)}/ and"
            f" {_shown(stack.postgres.data_dir)}/"
        )
        print("  for your own tools (plaintext listener, PostgreSQL's superuser):")
        for name, value in stack.environment().items():
            print(f"    {name}={value}")
        _print_grpcurl_hints(started, _shown(credentials.directory))
        _print_analyst_hints(stack)
        print("devstack: Ctrl-C stops everything", flush=True)
        return _watch(started)
    except KeyboardInterrupt:
        if not started:
            print("devstack: start interrupted; everything stopped")
        return 0
    finally:
        # A start that failed or was interrupted has already stopped what it had started.
        if started:
            _shut_down(stack, started)


# The gRPC servers among the Ledger services, and the API each one serves.
_GRPC_APIS = {
    "command-server": "ledger.v1.CommandService",
    "query-server": "ledger.v1.QueryService",
}


def _print_grpcurl_hints(services: Sequence[Service], credentials: str) -> None:
    """How to call the servers (TLS trusting the local CA, a token from `credentials`); the
    README's grpcurl section has the full walk-through."""
    servers = [s for s in services if _api_of(s) is not None]
    if servers:
        print('  call them with grpcurl (README.md, "Calling the services with grpcurl"):')
        print(f"    (ready tokens in {credentials}/: writer, reader, admin; README: Security)")
    flags = (
        f'-cacert {credentials}/ca.pem -H "authorization: Bearer $(cat {credentials}/writer.token)"'
    )
    for server in servers:
        print(f"    grpcurl {flags} {server.address} list")
        print(f"    grpcurl {flags} {server.address} describe {_api_of(server)}")


def _api_of(service: Service) -> str | None:
    """The API of a gRPC server among the services (command-server-1 is a command server)."""
    return _GRPC_APIS.get(service.name.rstrip("0123456789").removesuffix("-"))


def _print_analyst_hints(stack: LocalStack) -> None:
    """How an analyst connects: the read-only role, and the views it is meant to read."""
    postgres = stack.postgres
    url = postgres.role_url(postgres.databases[0], ANALYST_ROLE)
    password = _shown(password_file(postgres.data_dir, ANALYST_ROLE))
    print(
        f'  analysts (README, "Analysts\' access"): the views in {ANALYTICS_SCHEMA}, read-only'
        f" as {ANALYST_ROLE}:"
    )
    print(f"    PGPASSWORD=\"$(cat {password})\" {_shown(postgres.bin_dir / 'psql')} '{url}'")
    print(
        f"    LEDGER_DATABASE_URL='{url}' LEDGER_DATABASE_PASSWORD_FILE={password} \\\n"
        "      .venv/bin/python -m projector export --at 2026-12-31T23:59:59.999Z --format parquet"
        " --out exports/"
    )


def _watch(services: Sequence[Service]) -> int:
    """Sleep until interrupted; a service that dies on its own ends the run with an error."""
    while True:
        time.sleep(_WATCH_INTERVAL)
        for service in services:
            if not service.is_running():
                print(
                    f"devstack: {service.name} exited unexpectedly; see {_shown(service.log_file)}",
                    file=sys.stderr,
                )
                return 1


def _shut_down(stack: LocalStack, started: Sequence[Service]) -> None:
    print("devstack: stopping (Ctrl-C again to kill)", flush=True)
    extras = [service for service in started if service not in stack.services]
    try:
        for service in reversed(extras):
            service.stop()
        stack.stop()
    except KeyboardInterrupt:
        for service in extras:
            service.kill()
        stack.kill()
    print("devstack: stopped")


def _shown(path: Path) -> str:
    """`path` relative to the working directory when it is below it, for shorter lines."""
    cwd = Path.cwd()
    return str(path.relative_to(cwd)) if path.is_relative_to(cwd) else str(path)


if __name__ == "__main__":
    sys.exit(main())
