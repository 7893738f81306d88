"""Apache Kafka 4 in KRaft mode: a node that is both broker and controller, alone (the local
stack) or one of a replicated cluster's (`devstack/kafka_cluster.py`)."""

from __future__ import annotations

import base64
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import StackError
from devstack.java import java_executable
from devstack.maven import KAFKA_VERSION, kafka_libs
from devstack.passwords import local_password
from devstack.ports import LOOPBACK, ensure_port_free
from devstack.process import ManagedProcess, clean_environment, run_tool
from devstack.tls import ServerCertificate, server_certificate
from ledger.certificates import write_file

KAFKA_MIN_JAVA = 17
# The user of the SASL_SSL listener (its password: `Kafka.scram_password`).
SCRAM_USER = "ledger"
# log.cleaner.dedupe.buffer.size defaults to 128 MiB of heap, too much for a small -Xmx.
_DEDUPE_BUFFER_BYTES = 16 * 1024 * 1024

_LOG4J2 = """\
# Written by devstack on every start.
status = warn
# Log4j's own shutdown hook would close the appender while Kafka still logs its shutdown.
shutdownHook = disable
appender.console.type = Console
appender.console.name = console
appender.console.layout.type = PatternLayout
appender.console.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.console.ref = console
# Per-request and state-change chatter would drown the interesting lines.
logger.request.name = kafka.request.logger
logger.request.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


@dataclass(frozen=True, slots=True)
class Membership:
    """A node's place in a cluster of several: all nodes share the cluster id and the voters."""

    node_id: int
    cluster_id: str
    voters: str
    """`controller.quorum.voters`: `<node id>@<host>:<controller port>`, comma-separated."""
    replication_factor: int
    """Of the internal topics, and the default of new topics."""
    min_insync: int


class Kafka:
    """One Kafka node; data in `<data_dir>/logs`, its own log in `<data_dir>/kafka.log`.

    Alone unless given a `membership`; with a SASL_SSL listener when given a `secure_port`.
    """

    name = "kafka"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        controller_port: int,
        *,
        cache_dir: Path,
        secure_port: int | None = None,
        tls_dir: Path | None = None,
        membership: Membership | None = None,
        heap: str = "768m",
        ready_timeout: float = 90.0,
        cancel: threading.Event | None = None,
    ) -> None:
        if (secure_port is None) != (tls_dir is None):
            raise ValueError("a secure listener needs both secure_port and tls_dir")
        self.data_dir = data_dir
        self.port = port
        self.controller_port = controller_port
        self.secure_port = secure_port
        self.tls_dir = tls_dir
        self.cache_dir = cache_dir
        self.membership = membership
        self.heap = heap
        self.ready_timeout = ready_timeout
        self.log_dir = data_dir / "logs"
        self.log_file = data_dir / "kafka.log"
        self._cancel = cancel
        # A clean shutdown moves leadership and flushes logs; give it time before SIGKILL.
        self._process = ManagedProcess(self.name, self.log_file, stop_timeout=60.0)

    @property
    def bootstrap_servers(self) -> str:
        return f"{LOOPBACK}:{self.port}"

    @property
    def secure_bootstrap_servers(self) -> str:
        """The SASL_SSL listener: TLS with the stack's CA, then SCRAM-SHA-512 as SCRAM_USER."""
        if self.secure_port is None:
            raise StackError(f"the Kafka node in {self.data_dir} has no SASL_SSL listener")
        return f"{LOOPBACK}:{self.secure_port}"

    @property
    def node_id(self) -> int:
        return 1 if self.membership is None else self.membership.node_id

    @property
    def pid(self) -> int | None:
        """The JVM's pid while it runs."""
        return self._process.pid

    @property
    def scram_password(self) -> str:
        return local_password(self.data_dir, SCRAM_USER)

    @property
    def address(self) -> str:
        return self.bootstrap_servers

    def is_running(self) -> bool:
        return self._process.is_running()

    def start(self) -> None:
        """Format the storage on first use, start the node, wait until it answers metadata."""
        ensure_port_free(self.port, "kafka")
        ensure_port_free(self.controller_port, "kafka controller")
        if self.secure_port is not None:
            ensure_port_free(self.secure_port, "kafka secure listener")
        java = java_executable(KAFKA_MIN_JAVA, f"Kafka {KAFKA_VERSION}")
        classpath = f"{kafka_libs(self.cache_dir)}/*"
        self.data_dir.mkdir(parents=True, exist_ok=True)
        config = self._write_config()
        log4j = self.data_dir / "log4j2.properties"
        log4j.write_text(_LOG4J2)
        common = [f"-Dlog4j2.configurationFile={log4j}", "-cp", classpath]
        env = clean_environment()
        if not (self.log_dir / "meta.properties").is_file():
            run_tool(
                [
                    java,
                    # A one-second tool: the quick JIT and a simple GC leave the CPU to the
                    # registry and PostgreSQL that start at the same time.
                    "-XX:TieredStopAtLevel=1",
                    "-XX:+UseSerialGC",
                    *common,
                    "kafka.tools.StorageTool",
                    "format",
                    *self._format_arguments(),
                    "--config",
                    str(config),
                ],
                log_file=self.log_file,
                what="formatting Kafka's storage",
                timeout=120.0,
                env=env,
            )
        server = [
            java,
            f"-Xmx{self.heap}",
            "-Xms256m",
            "-XX:+UseG1GC",
            "-XX:MaxGCPauseMillis=20",
            "-XX:+ExitOnOutOfMemoryError",
            "-Djava.awt.headless=true",
            *common,
        ]
        self._process.launch([*server, "kafka.Kafka", str(config)], env=env)
        self._process.wait_ready(
            self._answers_metadata,
            timeout=self.ready_timeout,
            what="an admin client listing topics",
            cancel=self._cancel,
            then=None if self.secure_port is None else self._add_scram_user,
        )

    def stop(self) -> None:
        self._process.stop()

    def kill(self) -> None:
        self._process.kill()

    def _format_arguments(self) -> list[str]:
        # One argument each: a random id may start with "-" and read as an option.
        if self.membership is None:
            return ["--standalone", f"--cluster-id={new_cluster_id()}"]
        # The voters are in the configuration (a static quorum): nothing more to say.
        return [f"--cluster-id={self.membership.cluster_id}"]

    def _write_config(self) -> Path:
        # Rewritten on every start, so that the same data can be served on other ports.
        settings = {
            "process.roles": "broker,controller",
            **self._listener_settings(),
            **self._cluster_settings(),
            "controller.listener.names": "CONTROLLER",
            "inter.broker.listener.name": "PLAINTEXT",
            "log.dirs": str(self.log_dir),
            # One partition each: the first consumer group and the first transaction do not
            # wait for 50 partitions to get a leader.
            "offsets.topic.num.partitions": "1",
            "transaction.state.log.num.partitions": "1",
            "share.coordinator.state.topic.num.partitions": "1",
            "group.initial.rebalance.delay.ms": "0",
            "num.partitions": "1",
            # Topics are created on purpose (with their retention), never by a typo.
            "auto.create.topics.enable": "false",
            "log.cleaner.dedupe.buffer.size": str(_DEDUPE_BUFFER_BYTES),
            # A SIGKILLed node's old registration blocks the restarted one until its session
            # expires (default 9 s): shorter, for fault tests, yet tolerant of a slow CI machine.
            # In a cluster it is also how long a dead broker keeps leading its partitions.
            "broker.heartbeat.interval.ms": "1000",
            "broker.session.timeout.ms": "5000",
            # Sized for a 2-core machine.
            "num.network.threads": "2",
            "num.io.threads": "4",
            "num.recovery.threads.per.data.dir": "2",
        }
        config = self.data_dir / "server.properties"
        lines = ["# Written by devstack on every start."]
        lines += [f"{key}={value}" for key, value in settings.items()]
        config.write_text("\n".join(lines) + "\n")
        return config

    def _listener_settings(self) -> dict[str, str]:
        plaintext = f"PLAINTEXT://{LOOPBACK}:{self.port}"
        controller = f"CONTROLLER://{LOOPBACK}:{self.controller_port}"
        if self.secure_port is None or self.tls_dir is None:
            return {
                "listeners": f"{plaintext},{controller}",
                "advertised.listeners": f"{plaintext},{controller}",
                "listener.security.protocol.map": "PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            }
        listeners = f"{plaintext},SECURE://{LOOPBACK}:{self.secure_port},{controller}"
        tls = server_certificate(self.tls_dir, "kafka")
        return {
            "listeners": listeners,
            "advertised.listeners": listeners,
            "listener.security.protocol.map": (
                "PLAINTEXT:PLAINTEXT,SECURE:SASL_SSL,CONTROLLER:PLAINTEXT"
            ),
            # The SECURE listener: TLS with a certificate of the stack's CA, then SCRAM.
            "listener.name.secure.sasl.enabled.mechanisms": "SCRAM-SHA-512",
            "listener.name.secure.scram-sha-512.sasl.jaas.config": (
                "org.apache.kafka.common.security.scram.ScramLoginModule required;"
            ),
            "listener.name.secure.ssl.keystore.type": "PEM",
            "listener.name.secure.ssl.keystore.location": str(self._keystore(tls)),
        }

    def _cluster_settings(self) -> dict[str, str]:
        """The quorum, and the replication every internal topic gets."""
        member = self.membership
        if member is None:
            quorum = {
                "node.id": "1",
                "controller.quorum.bootstrap.servers": f"{LOOPBACK}:{self.controller_port}",
            }
            factor, min_insync = "1", "1"
        else:
            quorum = {"node.id": str(member.node_id), "controller.quorum.voters": member.voters}
            factor, min_insync = str(member.replication_factor), str(member.min_insync)
        return {
            **quorum,
            "offsets.topic.replication.factor": factor,
            "transaction.state.log.replication.factor": factor,
            "transaction.state.log.min.isr": min_insync,
            "share.coordinator.state.topic.replication.factor": factor,
            "share.coordinator.state.topic.min.isr": min_insync,
            "default.replication.factor": factor,
            "min.insync.replicas": min_insync,
            # Kafka's default, said out loud: an out-of-sync replica never becomes the leader,
            # which would drop what the others acknowledged.
            "unclean.leader.election.enable": "false",
        }

    def _keystore(self, tls: ServerCertificate) -> Path:
        """A PEM keystore: the private key (PKCS#8), then the certificate chain."""
        keystore = self.data_dir / "keystore.pem"
        write_file(keystore, tls.key.read_bytes() + tls.certificate.read_bytes(), secret=True)
        return keystore

    def _add_scram_user(self) -> None:
        """Give SCRAM_USER its password (again: an upsert), over the plaintext listener."""
        from confluent_kafka.admin import (
            AdminClient,
            ScramCredentialInfo,
            ScramMechanism,
            UserScramCredentialUpsertion,
        )

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        upsert = UserScramCredentialUpsertion(
            SCRAM_USER,
            ScramCredentialInfo(ScramMechanism.SCRAM_SHA_512, 4096),
            self.scram_password.encode(),
        )
        for future in admin.alter_user_scram_credentials([upsert]).values():
            future.result(timeout=30)

    def _answers_metadata(self) -> bool:
        from confluent_kafka import KafkaException
        from confluent_kafka.admin import AdminClient

        # log_level 0: librdkafka would print every refused connection while the node boots.
        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        try:
            metadata = admin.list_topics(timeout=2.0)
        except KafkaException:
            return False
        return bool(metadata.brokers)


def new_cluster_id() -> str:
    # Kafka's Uuid text form: 16 random bytes, URL-safe base64 without padding.
    return base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
