"""Apicurio Registry 3 serving the Confluent-compatible API, its schemas stored in Kafka.

KafkaSQL storage: every change to the registry is a record in a journal topic, which the registry
replays into an in-memory database when it starts. Kafka then holds everything needed to decode
the event log (the events and the schemas their ids point to); the registry keeps nothing of its
own on disk, and the read-model database can be dropped without losing a schema.
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import time
import urllib.request
from pathlib import Path

from devstack.errors import StackError, StartCancelled
from devstack.java import java_executable
from devstack.maven import REGISTRY_VERSION, registry_home
from devstack.ports import LOOPBACK, ensure_port_free, free_port
from devstack.process import ManagedProcess, clean_environment

CCOMPAT_PATH = "/apis/ccompat/v7"
# Apicurio Registry 3.3 is compiled for Java 21.
REGISTRY_MIN_JAVA = 21
# The registry's topics: the journal holds every schema, the snapshots topic points at snapshots
# of it (never made here: no scheduled snapshots), the events topic gets change notifications.
JOURNAL_TOPIC = "registry-journal"
SNAPSHOTS_TOPIC = "registry-snapshots"
EVENTS_TOPIC = "registry-events"
# What Apicurio checks before it starts (it refuses compaction, which would have no effect on
# its keys, and any retention): records are never deleted, so no schema is ever lost.
NEVER_DELETED = {"cleanup.policy": "delete", "retention.ms": "-1", "retention.bytes": "-1"}


class Registry:
    """One registry process; its log in `<data_dir>/registry.log`."""

    name = "registry"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        kafka_bootstrap: str,
        cache_dir: Path,
        heap: str = "512m",
        ready_timeout: float = 120.0,
        cancel: threading.Event | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.kafka_bootstrap = kafka_bootstrap
        self.cache_dir = cache_dir
        self.heap = heap
        self.ready_timeout = ready_timeout
        self.log_file = data_dir / "registry.log"
        self._cancel = cancel
        self._process = ManagedProcess(self.name, self.log_file, stop_timeout=30.0)
        # (file the JVM dumps its classes into at exit, where stop() publishes it)
        self._pending_archive: tuple[Path, Path] | None = None
        # Health (storage readiness) is served there; chosen at each start.
        self._management_port = 0

    @property
    def url(self) -> str:
        """Base URL of the Confluent-compatible API, for Confluent clients."""
        return f"http://{LOOPBACK}:{self.port}{CCOMPAT_PATH}"

    @property
    def address(self) -> str:
        return self.url

    def is_running(self) -> bool:
        return self._process.is_running()

    def start(self) -> None:
        """Start the registry (Kafka must be up) and wait until it has replayed its journal."""
        ensure_port_free(self.port, "registry")
        java = java_executable(REGISTRY_MIN_JAVA, f"Apicurio Registry {REGISTRY_VERSION}")
        home = registry_home(self.cache_dir)
        tmp = self.data_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        ensure_journal_topics(self.kafka_bootstrap, timeout=self.ready_timeout, cancel=self._cancel)
        self._management_port = free_port()
        settings = {
            "quarkus.http.host": LOOPBACK,
            "quarkus.http.port": str(self.port),
            # The management interface (health, metrics) is built in and defaults to port 9000,
            # which two stacks on one machine would fight over.
            "quarkus.management.host": LOOPBACK,
            "quarkus.management.port": str(self._management_port),
            "quarkus.http.access-log.enabled": "false",
            "apicurio.storage.kind": "kafkasql",
            "apicurio.kafkasql.bootstrap.servers": self.kafka_bootstrap,
            "apicurio.kafkasql.topic": JOURNAL_TOPIC,
            "apicurio.kafkasql.snapshots.topic": SNAPSHOTS_TOPIC,
            "apicurio.events.kafka.topic": EVENTS_TOPIC,
            # A snapshot is a file on the registry's disk: the journal alone must be enough.
            "apicurio.kafkasql.snapshot.scheduled.enabled": "false",
            # Checking the journal and looking for snapshots at start each read until a poll
            # comes back empty: the default 5 s per poll would make most of the start time.
            "apicurio.kafkasql.consumer.poll.timeout": "500",
            "apicurio.storage.snapshot.location": str(tmp),
            "apicurio.import.work-dir": str(tmp),
            "java.io.tmpdir": str(tmp),
        }
        self._process.launch(
            [
                java,
                f"-Xmx{self.heap}",
                "-Xms128m",
                "-XX:+ExitOnOutOfMemoryError",
                "-Djava.awt.headless=true",
                *self._class_data_sharing(java),
                *(f"-D{key}={value}" for key, value in settings.items()),
                "-jar",
                str(home / "quarkus-run.jar"),
            ],
            env=clean_environment(),
            cwd=self.data_dir,
        )
        self._process.wait_ready(
            self._answers,
            timeout=self.ready_timeout,
            what=f"health/ready (the journal replayed) and GET {CCOMPAT_PATH}/subjects",
            cancel=self._cancel,
        )

    def stop(self) -> None:
        clean = self._process.stop()
        self._settle_archive(publish=clean)

    def kill(self) -> None:
        self._process.kill()
        self._settle_archive(publish=False)

    def _class_data_sharing(self, java: str) -> list[str]:
        """JVM flags that reuse the classes a previous run loaded (class data sharing).

        Quarkus loads thousands of classes at startup; from an archive the registry starts
        seconds faster. The first run with a JVM dumps its classes at exit into a file of its
        own, which `stop()` then renames into the shared cache: stacks running side by side
        (tests and `make run`) never write the same archive at once.
        """
        # One archive per JVM build and registry version: an archive only fits the JVM that
        # wrote it (an updated JDK has a new binary, hence a new modification time).
        binary = os.path.realpath(java)
        jvm = f"{binary}:{os.stat(binary).st_mtime_ns}"
        jvm_id = hashlib.sha256(jvm.encode()).hexdigest()[:12]
        archive = self.cache_dir / f"apicurio-registry-{REGISTRY_VERSION}-{jvm_id}.jsa"
        if archive.is_file():
            self._pending_archive = None
            return [f"-XX:SharedArchiveFile={archive}"]
        dump = archive.with_name(f"{archive.name}.{os.getpid()}-{self.port}.tmp")
        self._pending_archive = (dump, archive)
        return [f"-XX:ArchiveClassesAtExit={dump}"]

    def _settle_archive(self, *, publish: bool) -> None:
        pending, self._pending_archive = self._pending_archive, None
        if pending is None:
            return
        dump, archive = pending
        if publish and dump.is_file():
            # Atomic: a concurrent start sees either no archive or a complete one.
            dump.replace(archive)
        else:
            # A killed JVM wrote no archive, or only part of one.
            dump.unlink(missing_ok=True)

    def _answers(self) -> bool:
        # The API answers while the journal is still being replayed (a schema id could then be
        # missing); readiness waits for the registry's own marker record to come back.
        management = f"http://{LOOPBACK}:{self._management_port}"
        return _ok(f"{management}/health/ready") and _ok(f"{self.url}/subjects")


def ensure_journal_topics(
    bootstrap: str, *, timeout: float, cancel: threading.Event | None = None
) -> None:
    """Create the registry's journal and snapshots topics unless they exist, never deleted.

    Made here rather than by the registry so that their configuration is ours whatever the
    broker's defaults: one partition (the journal is replayed in order) and a replication that
    fits the cluster (three copies when there are three brokers, two of them in sync). Waits
    for Kafka to answer, up to `timeout` seconds.
    """
    from confluent_kafka import KafkaError, KafkaException
    from confluent_kafka.admin import AdminClient, NewTopic

    admin = AdminClient({"bootstrap.servers": bootstrap, "log_level": 0})
    deadline = time.monotonic() + timeout
    while True:
        if cancel is not None and cancel.is_set():
            raise StartCancelled("registry: start cancelled while waiting for Kafka")
        try:
            brokers = len(admin.list_topics(timeout=2.0).brokers)
        except KafkaException:
            brokers = 0
        if brokers:
            break
        if time.monotonic() > deadline:
            raise StackError(f"registry: Kafka at {bootstrap} did not answer within {timeout:.0f}s")
    replicas = min(3, brokers)
    config = {**NEVER_DELETED, "min.insync.replicas": str(max(replicas - 1, 1))}
    topics = [
        NewTopic(topic, 1, replicas, config=config) for topic in (JOURNAL_TOPIC, SNAPSHOTS_TOPIC)
    ]
    for name, future in admin.create_topics(topics, request_timeout=30.0).items():
        try:
            future.result(timeout=60.0)
        except KafkaException as error:
            if error.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise StackError(f"registry: cannot create topic {name!r}: {error}") from None


def _ok(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=2.0) as response:
            return bool(response.status == 200)
    except (OSError, http.client.HTTPException):
        return False
