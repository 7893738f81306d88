"""Ledger's own processes (command server, projector, query server) run as children of the stack.

Shared by `make run`, the end-to-end tests and the benchmarks, so that all of them start the
services exactly the same way: `python -m <package>` with the stack's environment.

The gRPC servers run with TLS and token authentication when given `secure=` local credentials
(`make run`, the security tests); otherwise in plaintext without authentication on loopback
(LEDGER_INSECURE=1), which is what most tests and benchmarks measure and call.
"""

from __future__ import annotations

import sys
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.credentials import channel_credentials
from devstack.ports import LOOPBACK, free_port
from devstack.process import ManagedProcess, clean_environment
from devstack.stack import LocalStack
from ledger.auth.local import LocalCredentials, ensure_key_encryption_key


def _channel(address: str, secure: LocalCredentials | None) -> grpc.Channel:
    if secure is None:
        return grpc.insecure_channel(address)
    return grpc.secure_channel(address, channel_credentials(secure))


def grpc_serving(address: str, secure: LocalCredentials | None = None) -> Callable[[], bool]:
    """A readiness probe: the server's grpc.health.v1 answers SERVING (health needs no token;
    over TLS trusting the local CA when `secure`)."""

    def probe() -> bool:
        with _channel(address, secure) as channel:
            try:
                reply = health_pb2_grpc.HealthStub(channel).Check(
                    health_pb2.HealthCheckRequest(service=""), timeout=1
                )
            except grpc.RpcError:
                return False
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

    return probe


class LedgerService:
    """One Ledger process: started, probed until ready, stopped (SIGTERM) or killed (SIGKILL)."""

    def __init__(
        self,
        name: str,
        module: str,
        *,
        env: Mapping[str, str],
        log_file: Path,
        address: str,
        ready: Callable[[], bool],
        start_timeout: float = 60,
        secure: LocalCredentials | None = None,
    ) -> None:
        self.name = name
        self.secure = secure
        """The credentials the server uses (TLS, tokens), or None: plaintext, no tokens."""
        self.module = module
        self.env = dict(env)
        self.address = address
        self._ready = ready
        self._start_timeout = start_timeout
        self._process = ManagedProcess(name, log_file, stop_timeout=30)

    @classmethod
    def command_server(
        cls,
        stack: LocalStack,
        data_dir: Path,
        *,
        topic: str | None = None,
        listen: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        secure: LocalCredentials | None = None,
        name: str = "command-server",
    ) -> LedgerService:
        """A command server; `name` tells shards apart (log file)."""
        env = {**(extra_env or {}), **_topic(topic)}
        return cls._grpc_server(
            name, "LEDGER_COMMAND_ADDR", stack, data_dir, listen, env, secure, "command_server"
        )

    @classmethod
    def command_shards(
        cls,
        stack: LocalStack,
        data_dir: Path,
        addresses: Sequence[str],
        *,
        topic: str | None = None,
        extra_env: Callable[[int], Mapping[str, str]] = lambda index: {},
        secure: LocalCredentials | None = None,
    ) -> list[LedgerService]:
        """One command server per address (shard i listens on `addresses[i]`), each forwarding
        the commands it does not own to the others (over TLS trusting the local CA when
        `secure`); `extra_env(i)` is added to shard i's environment."""
        count = len(addresses)
        peers = {"LEDGER_SHARD_COUNT": str(count), "LEDGER_COMMAND_PEERS": ",".join(addresses)}
        if secure is not None:
            peers["LEDGER_COMMAND_PEERS_CA"] = str(secure.ca)
        return [
            cls.command_server(
                stack,
                data_dir,
                topic=topic,
                listen=address,
                extra_env={**peers, "LEDGER_SHARD_INDEX": str(index), **extra_env(index)},
                secure=secure,
                name=f"command-server-{index}" if count > 1 else "command-server",
            )
            for index, address in enumerate(addresses)
        ]

    @classmethod
    def query_server(
        cls,
        stack: LocalStack,
        data_dir: Path,
        *,
        topic: str | None = None,
        database_url: str | None = None,
        listen: str | None = None,
        extra_env: Mapping[str, str] | None = None,
        secure: LocalCredentials | None = None,
    ) -> LedgerService:
        env = {**(extra_env or {}), **_topic(topic)}
        if database_url is not None:
            env["LEDGER_DATABASE_URL"] = database_url
        return cls._grpc_server(
            "query-server",
            "LEDGER_QUERY_ADDR",
            stack,
            data_dir,
            listen,
            env,
            secure,
            "query_server",
        )

    @classmethod
    def _grpc_server(
        cls,
        name: str,
        address_variable: str,
        stack: LocalStack,
        data_dir: Path,
        listen: str | None,
        env: Mapping[str, str],
        secure: LocalCredentials | None,
        module: str,
    ) -> LedgerService:
        """`python -m <module>` listening on `listen` (default: a free port), ready
        once its health service answers SERVING."""
        address = listen or f"{LOOPBACK}:{free_port()}"
        return cls(
            name,
            module,
            env={
                **stack.environment(),
                # One key for the whole stack, so that every server opens what another sealed;
                # secure servers use the one beside their credentials instead.
                "LEDGER_KEY_ENCRYPTION_KEY_FILE": str(
                    ensure_key_encryption_key(stack.data_dir / "key-encryption.key")
                ),
                **_grpc_security(secure),
                address_variable: address,
                **env,
            },
            log_file=data_dir / "logs" / f"{name}.log",
            address=address,
            ready=grpc_serving(address, secure),
            secure=secure,
        )

    def channel(
        self, token: str | None = None, options: Sequence[tuple[str, Any]] | None = None
    ) -> grpc.aio.Channel:
        """An asyncio channel to this gRPC server: TLS with `token` when it runs secure."""
        if self.secure is None:
            return grpc.aio.insecure_channel(self.address, options=options)
        credentials = channel_credentials(self.secure, token)
        return grpc.aio.secure_channel(self.address, credentials, options=options)

    @classmethod
    def projector(
        cls,
        stack: LocalStack,
        data_dir: Path,
        *,
        topic: str | None = None,
        http: str | None = None,
        name: str = "projector",
        extra_env: Mapping[str, str] | None = None,
    ) -> LedgerService:
        """The projector, ready once its /healthz answers 200 (consuming, database reachable).

        `name` tells instances apart (log file); each gets its own status port unless `http`
        says which.
        """
        address = http or f"{LOOPBACK}:{free_port()}"
        env = {
            **stack.environment(),
            "LEDGER_PROJECTOR_HTTP": address,
            **(extra_env or {}),
            **_topic(topic),
        }

        def healthy() -> bool:
            try:
                with urllib.request.urlopen(f"http://{address}/healthz", timeout=2) as reply:
                    return bool(reply.status == 200)
            except OSError:
                return False

        return cls(
            name,
            "projector",
            env=env,
            log_file=data_dir / "logs" / f"{name}.log",
            address=address,
            ready=healthy,
        )

    @property
    def log_file(self) -> Path:
        return self._process.log_file

    @property
    def pid(self) -> int | None:
        """The process's pid while it runs."""
        return self._process.pid

    def launch(self) -> None:
        self._process.launch([sys.executable, "-m", self.module], env=clean_environment(self.env))

    def start(self) -> None:
        """Launch and wait until ready; raises StackError with the log's tail if it is not."""
        self.launch()
        self._process.wait_ready(
            self._ready, timeout=self._start_timeout, what=f"{self.name} ready at {self.address}"
        )

    def stop(self) -> None:
        self._process.stop()

    def kill(self) -> None:
        self._process.kill()

    def is_running(self) -> bool:
        return self._process.is_running()

    def wait_exit(self, timeout: float) -> int:
        return self._process.wait(timeout)

    def run_to_exit(self, timeout: float) -> int:
        self.launch()
        return self.wait_exit(timeout)

    def log_text(self) -> str:
        return self.log_file.read_text(errors="replace")


@contextmanager
def running(services: Sequence[LedgerService]) -> Iterator[None]:
    """`services` started in order, each ready before the next; those started are stopped in
    reverse order when the block ends (or when a later one fails to start)."""
    started: list[LedgerService] = []
    try:
        for service in services:
            service.start()
            started.append(service)
        yield
    finally:
        for service in reversed(started):
            service.stop()


def _topic(topic: str | None) -> dict[str, str]:
    return {} if topic is None else {"LEDGER_TOPIC": topic}


def _grpc_security(secure: LocalCredentials | None) -> dict[str, str]:
    """TLS and tokens from the local credentials, or plaintext on loopback."""
    if secure is None:
        return {"LEDGER_INSECURE": "1"}
    return secure.server_environment()
