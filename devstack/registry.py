"""Apicurio Registry 3 serving the Confluent-compatible API, stored in our PostgreSQL.

SQL storage rather than KafkaSQL: schema ids then live in ordinary tables that survive a registry
restart, and the registry does not depend on Kafka being up (it can start as soon as PostgreSQL
answers, in parallel with the broker).
"""

from __future__ import annotations

import hashlib
import http.client
import os
import threading
import urllib.request
from pathlib import Path

from devstack.java import java_executable
from devstack.maven import REGISTRY_VERSION, registry_home
from devstack.ports import LOOPBACK, ensure_port_free
from devstack.process import ManagedProcess, clean_environment

CCOMPAT_PATH = "/apis/ccompat/v7"
# Apicurio Registry 3.3 is compiled for Java 21.
REGISTRY_MIN_JAVA = 21


class Registry:
    """One registry process; its log in `<data_dir>/registry.log`."""

    name = "registry"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        jdbc_url: str,
        jdbc_user: str,
        cache_dir: Path,
        heap: str = "512m",
        ready_timeout: float = 120.0,
        cancel: threading.Event | None = None,
    ) -> None:
        self.data_dir = data_dir
        self.port = port
        self.jdbc_url = jdbc_url
        self.jdbc_user = jdbc_user
        self.cache_dir = cache_dir
        self.heap = heap
        self.ready_timeout = ready_timeout
        self.log_file = data_dir / "registry.log"
        self._cancel = cancel
        self._process = ManagedProcess(self.name, self.log_file, stop_timeout=30.0)
        # (file the JVM dumps its classes into at exit, where stop() publishes it)
        self._pending_archive: tuple[Path, Path] | None = None

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
        """Start the registry (its storage must be up) and wait until the API answers."""
        ensure_port_free(self.port, "registry")
        java = java_executable(REGISTRY_MIN_JAVA, f"Apicurio Registry {REGISTRY_VERSION}")
        home = registry_home(self.cache_dir)
        tmp = self.data_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        settings = {
            "quarkus.http.host": LOOPBACK,
            "quarkus.http.port": str(self.port),
            # The management interface (health, metrics) is built in and defaults to port 9000,
            # which two stacks on one machine would fight over: let the OS pick one.
            "quarkus.management.host": LOOPBACK,
            "quarkus.management.port": "0",
            "quarkus.http.access-log.enabled": "false",
            "apicurio.storage.kind": "sql",
            "apicurio.storage.sql.kind": "postgresql",
            "apicurio.datasource.url": self.jdbc_url,
            "apicurio.datasource.username": self.jdbc_user,
            # Loopback connections are trusted (trust auth), so this is never checked.
            "apicurio.datasource.password": "unused",
            # The defaults (20 idle, 100 max) would take a large share of max_connections.
            "apicurio.datasource.jdbc.initial-size": "2",
            "apicurio.datasource.jdbc.min-size": "2",
            "apicurio.datasource.jdbc.max-size": "20",
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
            what=f"GET {CCOMPAT_PATH}/subjects",
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
        try:
            with urllib.request.urlopen(f"{self.url}/subjects", timeout=2.0) as response:
                return bool(response.status == 200)
        except (OSError, http.client.HTTPException):
            return False
