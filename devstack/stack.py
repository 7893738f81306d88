"""The whole local stack: Kafka, schema registry and PostgreSQL, started and stopped together."""

from __future__ import annotations

import threading
from pathlib import Path
from types import TracebackType

from devstack.errors import StackError
from devstack.java import java_executable
from devstack.kafka import KAFKA_MIN_JAVA, SCRAM_USER, Kafka
from devstack.locations import default_cache_dir
from devstack.maven import KAFKA_VERSION, REGISTRY_VERSION, fetch_all
from devstack.parallel import in_parallel
from devstack.ports import StackPorts, ensure_port_free
from devstack.postgres import Postgres
from devstack.registry import REGISTRY_MIN_JAVA, Registry
from devstack.service import Service
from devstack.tls import server_certificate

LEDGER_DATABASE = "ledger"


class LocalStack:
    """Real Kafka, Apicurio Registry and PostgreSQL on loopback ports, with data in `data_dir`.

    `start()` on a data dir used before keeps its topics, schemas and tables. Each component can
    also be stopped, killed and started on its own (restart and fault tests).
    """

    def __init__(self, data_dir: Path, ports: StackPorts, cache_dir: Path | None = None) -> None:
        self.data_dir = data_dir.absolute()
        self.ports = ports
        self.cache_dir = (cache_dir or default_cache_dir()).absolute()
        # Set by an interrupted start() so that components still waiting for readiness give up.
        self._cancel = threading.Event()
        # The stack's CA and its servers' certificates (devstack/tls.py).
        self.tls_dir = self.data_dir / "tls"
        self.postgres = Postgres(
            self.data_dir / "postgres",
            ports.postgres,
            databases=(LEDGER_DATABASE,),
            tls_dir=self.tls_dir,
            cancel=self._cancel,
        )
        self.kafka = Kafka(
            self.data_dir / "kafka",
            ports.kafka,
            ports.kafka_controller,
            secure_port=ports.kafka_secure,
            tls_dir=self.tls_dir,
            cache_dir=self.cache_dir,
            cancel=self._cancel,
        )
        self.registry = Registry(
            self.data_dir / "registry",
            ports.registry,
            kafka_bootstrap=self.kafka.bootstrap_servers,
            cache_dir=self.cache_dir,
            cancel=self._cancel,
        )

    @property
    def services(self) -> tuple[Service, ...]:
        return (self.kafka, self.registry, self.postgres)

    @property
    def kafka_bootstrap(self) -> str:
        return self.kafka.bootstrap_servers

    @property
    def registry_url(self) -> str:
        return self.registry.url

    @property
    def database_url(self) -> str:
        return self.postgres.url(LEDGER_DATABASE)

    def environment(self) -> dict[str, str]:
        """How the Ledger services find this stack (their configuration is environment-based)."""
        return {
            "LEDGER_KAFKA_BOOTSTRAP_SERVERS": self.kafka_bootstrap,
            "LEDGER_SCHEMA_REGISTRY_URL": self.registry_url,
            "LEDGER_DATABASE_URL": self.database_url,
        }

    def secure_environment(self, service: str, database: str = LEDGER_DATABASE) -> dict[str, str]:
        """How `service` ("command-server", "projector" or "query-server") reaches this stack
        with credentials: Kafka's SASL_SSL listener as the SCRAM user, and PostgreSQL over TLS
        verified against the stack's CA, as the projector's role (the read model's owner) or
        the query server's (which may only read it)."""
        ca = server_certificate(self.tls_dir, "kafka").ca
        environment = {
            **self.environment(),
            "LEDGER_KAFKA_BOOTSTRAP_SERVERS": self.kafka.secure_bootstrap_servers,
            "LEDGER_KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "LEDGER_KAFKA_SASL_MECHANISM": "SCRAM-SHA-512",
            "LEDGER_KAFKA_SASL_USERNAME": SCRAM_USER,
            "LEDGER_KAFKA_SASL_PASSWORD": self.kafka.scram_password,
            "LEDGER_KAFKA_SSL_CA_LOCATION": str(ca),
        }
        # The superuser's URL goes: the command server does not use the database, the others
        # connect as their roles.
        del environment["LEDGER_DATABASE_URL"]
        return {**environment, **self.postgres.service_environment(service, database)}

    def start(self) -> None:
        """Fetch what is missing, then start everything; returns when all three are ready."""
        running = [service.name for service in self.services if service.is_running()]
        if running:
            raise StackError(f"the stack in {self.data_dir} is already running ({running})")
        # Fail fast, before any download or process, on what the developer has to fix.
        for port, what in (
            (self.ports.kafka, "kafka"),
            (self.ports.kafka_controller, "kafka controller"),
            (self.ports.kafka_secure, "kafka secure listener"),
            (self.ports.registry, "registry"),
            (self.ports.postgres, "postgres"),
        ):
            ensure_port_free(port, what)
        java_executable(KAFKA_MIN_JAVA, f"Kafka {KAFKA_VERSION}")
        java_executable(REGISTRY_MIN_JAVA, f"Apicurio Registry {REGISTRY_VERSION}")
        fetch_all(self.cache_dir)
        self._cancel.clear()
        try:
            # The registry keeps its schemas in Kafka; PostgreSQL comes up meanwhile.
            in_parallel(self._start_kafka_then_registry, self.postgres.start, cancel=self._cancel)
        except BaseException:
            self._cancel.set()
            self.stop()
            raise

    def _start_kafka_then_registry(self) -> None:
        self.kafka.start()
        self.registry.start()

    def stop(self) -> None:
        """Stop everything cleanly; components that are not running are skipped."""
        # One after the other (each takes about a second) so that an interrupt lands in this
        # thread; the registry is a client of Kafka, so it goes first.
        self.registry.stop()
        self.kafka.stop()
        self.postgres.stop()

    def kill(self) -> None:
        """SIGKILL every component, as a crash would."""
        for service in self.services:
            service.kill()

    def __enter__(self) -> LocalStack:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
