"""The benchmark's environment: one real local stack on free ports, and the servers under test."""

from __future__ import annotations

import asyncio
import math
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack, asynccontextmanager, contextmanager
from dataclasses import dataclass
from pathlib import Path

from bench.ghz import GhzError, GhzRun, GhzTls, Load, run_ghz
from bench.loader import Loaded, load
from bench.noop_server import ADDRESS_VARIABLE
from bench.procstat import descendant_pid, tree_cpu_seconds
from bench.read_model_database import fresh_database, wait_covered
from devstack import LocalStack, StackPorts, default_cache_dir
from devstack.credentials import local_credentials
from devstack.ledger_services import LedgerService, grpc_serving
from devstack.ports import LOOPBACK, free_port
from devstack.process import clean_environment
from ledger.auth.local import LocalCredentials


@dataclass
class Bench:
    """What every scenario gets: the stack, a scratch directory and the cache (jars, ghz)."""

    stack: LocalStack
    work_dir: Path
    cache_dir: Path
    quick: bool

    def kafka_pid(self) -> int:
        """The Kafka broker's JVM, to account for the CPU the event store costs."""
        return descendant_pid("kafka.Kafka")

    def postgres_pid(self) -> int:
        """The PostgreSQL postmaster: its tree holds the backends doing the read model's work."""
        return descendant_pid(str(self.stack.postgres.pgdata))

    def new_topic(self, purpose: str) -> str:
        return f"bench_{purpose}_{uuid.uuid4().hex[:8]}"

    def open_accounts(self, topic: str, accounts: int, prefix: str) -> Loaded:
        """`accounts` accounts opened in `topic` by producing their AccountOpened events
        directly: seconds, where as many OpenAccount calls would outlast the measurements."""
        return load(
            self.stack.kafka_bootstrap,
            self.stack.registry_url,
            topic,
            first_account=0,
            accounts=accounts,
            per_account=1,
            prefix=prefix,
        )

    def credentials(self) -> LocalCredentials:
        """A CA, server certificate, signing key and ready tokens, made on first use."""
        return local_credentials(self.work_dir)

    def ghz_tls(self, token: str) -> GhzTls:
        """How ghz calls a server started with `secure=True`: trusting the local CA, with the
        ready token `token` (writer, reader)."""
        credentials = self.credentials()
        metadata = self.work_dir / f"ghz-{token}-metadata.json"
        return GhzTls.bearer(credentials.ca, credentials.token(token), metadata)

    def command_server(
        self, topic: str, extra_env: Mapping[str, str] | None = None, *, secure: bool = False
    ) -> LedgerService:
        """The command server on `topic`: in plaintext without tokens, or with TLS and tokens
        (`secure`, the local credentials)."""
        env, credentials = self._grpc_server_setup(extra_env, secure)
        return LedgerService.command_server(
            self.stack,
            self.work_dir / f"cs-{topic}",
            topic=topic,
            extra_env=env,
            secure=credentials,
        )

    def projector(
        self,
        topic: str,
        database_url: str,
        extra_env: Mapping[str, str] | None = None,
        http: str | None = None,
    ) -> LedgerService:
        env = {
            "LEDGER_LOG_LEVEL": "WARNING",
            "LEDGER_DATABASE_URL": database_url,
            # Its own consumer group: the checkpoints in its fresh database say where to start.
            "LEDGER_PROJECTOR_GROUP": f"bench-{topic}",
            **(extra_env or {}),
        }
        return LedgerService.projector(
            self.stack,
            self.work_dir / f"projector-{topic}",
            topic=topic,
            http=http,
            extra_env=env,
        )

    @asynccontextmanager
    async def projected_database(
        self, topic: str, purpose: str, last_offsets: Mapping[int, int], timeout_s: float
    ) -> AsyncIterator[str]:
        """A fresh read model holding `topic` up to `last_offsets`, its projector stopped again
        so that it takes no CPU from what is measured next; yields its URL, dropped after."""
        async with fresh_database(self.stack, purpose) as database_url:
            projector = self.projector(topic, database_url)
            try:
                await asyncio.to_thread(projector.start)
                await wait_covered(database_url, topic, last_offsets, timeout_s=timeout_s)
            finally:
                await asyncio.to_thread(projector.stop)
            yield database_url

    def query_server(self, topic: str, database_url: str, *, secure: bool = False) -> LedgerService:
        """The query server: plaintext without tokens, or with TLS and tokens (`secure`)."""
        env, credentials = self._grpc_server_setup(None, secure)
        return LedgerService.query_server(
            self.stack,
            self.work_dir / f"{'qs-tls' if secure else 'qs'}-{topic}",
            topic=topic,
            database_url=database_url,
            extra_env=env,
            secure=credentials,
        )

    def _grpc_server_setup(
        self, extra_env: Mapping[str, str] | None, secure: bool
    ) -> tuple[dict[str, str], LocalCredentials | None]:
        """A gRPC server's environment and credentials (None: plaintext, no tokens)."""
        # Metrics on a free port: the default one may be taken by a `make run` on this machine,
        # or by another server of the same scenario.
        env = {
            "LEDGER_LOG_LEVEL": "WARNING",
            "LEDGER_METRICS_ADDR": f"{LOOPBACK}:{free_port()}",
            **(extra_env or {}),
        }
        return env, self.credentials() if secure else None

    def noop_server(self) -> LedgerService:
        address = f"{LOOPBACK}:{free_port()}"
        env = clean_environment({ADDRESS_VARIABLE: address})
        return LedgerService(
            "noop-server",
            "bench.noop_server",
            env=env,
            log_file=self.work_dir / "logs" / "noop-server.log",
            address=address,
            ready=grpc_serving(address),
        )


@contextmanager
def bench_environment(quick: bool, keep: bool = False) -> Iterator[Bench]:
    """Start Kafka, the registry and PostgreSQL in a temp dir; stop them and drop it after."""
    cache_dir = default_cache_dir()
    work_dir = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    try:
        started = time.monotonic()
        print(f"starting the local stack in {work_dir} ...", flush=True)
        with LocalStack(work_dir / "stack", StackPorts.free(), cache_dir=cache_dir) as stack:
            print(f"stack ready in {time.monotonic() - started:.1f}s", flush=True)
            yield Bench(stack, work_dir, cache_dir, quick)
    finally:
        if keep:
            print(f"kept the stack's data and logs in {work_dir}", flush=True)
        else:
            shutil.rmtree(work_dir, ignore_errors=True)


def _pid(service: LedgerService) -> int:
    pid = service.pid
    if pid is None:
        raise LookupError(f"{service.name} is not running")
    return pid


@contextmanager
def running(service: LedgerService) -> Iterator[int]:
    """Start `service`, yield its pid, and always stop it."""
    try:
        service.start()
        yield _pid(service)
    finally:
        service.stop()


@contextmanager
def running_all(services: Sequence[LedgerService]) -> Iterator[list[int]]:
    """Start `services` at once (each spends seconds importing and connecting, mostly waiting),
    yield their pids in order, and always stop every one started."""
    with ExitStack() as stack:
        for service in services:
            stack.callback(service.stop)
        with ThreadPoolExecutor(max_workers=len(services)) as pool:
            for started in [pool.submit(service.start) for service in services]:
                started.result()
        yield [_pid(service) for service in services]


class CpuMeter:
    """CPU seconds a process and its descendants spend between `start()` and `stop()`."""

    def __init__(self, pid: int) -> None:
        self._pid = pid
        self._started_cpu = 0.0
        self._started_at = 0.0
        self.cpu_s = 0.0
        self.wall_s = 0.0

    def start(self) -> None:
        self._started_cpu = tree_cpu_seconds(self._pid)
        self._started_at = time.monotonic()

    def stop(self) -> None:
        self.cpu_s = tree_cpu_seconds(self._pid) - self._started_cpu
        self.wall_s = time.monotonic() - self._started_at

    @property
    def cores(self) -> float:
        return self.cpu_s / self.wall_s if self.wall_s > 0 else 0.0


@dataclass(frozen=True)
class Metered:
    """One ghz run, with the CPU the server and the store behind it (Kafka, PostgreSQL) spent."""

    run: GhzRun
    server: CpuMeter
    store: CpuMeter

    def per_call_ms(self, cpu_s: float) -> float:
        return cpu_s * 1000 / self.run.ok if self.run.ok else math.nan

    def figures(self, rate: str, cpu_ms: tuple[str, str, str]) -> dict[str, float]:
        """The run's figures: `rate` names the successful calls/s, `cpu_ms` the CPU milliseconds
        per successful call of the server, the store and ghz (steadier than rates on a shared
        machine)."""
        server_cpu, store_cpu, loadgen_cpu = cpu_ms
        return {
            rate: self.run.ok_rps,
            "p50_ms": self.run.p50_ms,
            "p99_ms": self.run.p99_ms,
            "errors": float(self.run.count - self.run.ok),
            "server_cores": self.server.cores,
            "loadgen_cores": self.run.cpu_cores,
            server_cpu: self.per_call_ms(self.server.cpu_s),
            store_cpu: self.per_call_ms(self.store.cpu_s),
            loadgen_cpu: self.per_call_ms(self.run.cpu_s),
        }


def metered_ghz(
    ghz: Path,
    address: str,
    server_pid: int,
    store_pid: int,
    load: Load,
    tls: GhzTls | None = None,
) -> Metered:
    """Run ghz against `address` (plaintext, or as `tls` says) while metering both processes;
    GhzError if no call succeeded."""
    server, store = CpuMeter(server_pid), CpuMeter(store_pid)
    server.start()
    store.start()
    run = run_ghz(ghz, address, load, tls)
    server.stop()
    store.stop()
    if run.ok == 0:
        raise GhzError(f"no call to {address} succeeded: {run.errors}")
    return Metered(run, server, store)
