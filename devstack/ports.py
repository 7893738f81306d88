"""Which loopback ports the stack listens on, and checking that they are free."""

from __future__ import annotations

import os
import socket
from contextlib import ExitStack
from dataclasses import dataclass, fields

from devstack.errors import StackError

LOOPBACK = "127.0.0.1"

_ENV_NAMES = {
    "kafka": "LEDGER_KAFKA_PORT",
    "kafka_controller": "LEDGER_KAFKA_CONTROLLER_PORT",
    "kafka_secure": "LEDGER_KAFKA_SECURE_PORT",
    "registry": "LEDGER_REGISTRY_PORT",
    "postgres": "LEDGER_POSTGRES_PORT",
}


@dataclass(frozen=True)
class StackPorts:
    """TCP ports on 127.0.0.1, one per listener of the stack."""

    kafka: int = 9092
    kafka_controller: int = 9093
    # Kafka's SASL_SSL listener (SCRAM-SHA-512 over TLS), next to the plaintext one.
    kafka_secure: int = 9094
    registry: int = 8081
    postgres: int = 5432

    @classmethod
    def from_env(cls) -> StackPorts:
        """The default ports, each overridable by its `LEDGER_*_PORT` environment variable."""
        values: dict[str, int] = {}
        for field in fields(cls):
            env_name = _ENV_NAMES[field.name]
            raw = os.environ.get(env_name)
            if raw is None or raw.strip() == "":
                continue
            try:
                port = int(raw)
            except ValueError:
                raise StackError(f"{env_name}={raw!r} is not a port number") from None
            if not 0 < port < 65536:
                raise StackError(f"{env_name}={port} is outside 1-65535")
            values[field.name] = port
        return cls(**values)

    @classmethod
    def free(cls) -> StackPorts:
        """Ports that nothing listens on right now, for a stack that must not collide (tests)."""
        return cls(*free_ports(len(fields(cls))))


def free_port() -> int:
    """One loopback port that nothing listens on right now (for a server started next)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def free_ports(count: int) -> list[int]:
    """`count` distinct loopback ports that nothing listens on right now."""
    # All sockets stay bound until every port is picked, so the ports are distinct.
    with ExitStack() as sockets:
        ports = []
        for _ in range(count):
            sock = sockets.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            sock.bind((LOOPBACK, 0))
            ports.append(sock.getsockname()[1])
    return ports


def free_ports_in_a_row(count: int) -> int:
    """The first of `count` consecutive loopback ports that nothing listens on right now (for a
    supervised projector: worker i serves its status on the first port + i)."""
    for _ in range(100):
        with ExitStack() as sockets:
            first = sockets.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
            first.bind((LOOPBACK, 0))
            start: int = first.getsockname()[1]
            if start + count - 1 > 65535:
                continue
            try:
                for port in range(start + 1, start + count):
                    sock = sockets.enter_context(socket.socket(socket.AF_INET, socket.SOCK_STREAM))
                    sock.bind((LOOPBACK, port))
            except OSError:
                continue
            return start
    raise StackError(f"found no {count} free loopback ports in a row")


def ensure_port_free(port: int, what: str) -> None:
    """Raise a StackError when something already listens on 127.0.0.1:`port`."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        # SO_REUSEADDR ignores TIME_WAIT leftovers of a component we just stopped (the JVMs and
        # PostgreSQL bind with it too) but still fails when a socket is listening.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError as error:
            raise StackError(
                f"port {port} on {LOOPBACK} for {what} is already in use ({error.strerror}): "
                f"stop whatever listens there (ss -ltnp 'sport = :{port}') or choose another "
                "port with the LEDGER_*_PORT environment variables"
            ) from None
