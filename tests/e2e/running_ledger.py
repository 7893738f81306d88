"""The three Ledger processes, started for a test module on the session's stack.

Each module gets its own event topic and read-model database, so that what it writes (the
README's fixed account ids, say) meets nothing another module wrote. The gRPC servers get
/metrics on free ports, so that they collide neither with each other nor with `make run`.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path

from confluent_kafka.admin import AdminClient

from command_server.topic import ensure_event_topic
from devstack.credentials import local_credentials
from devstack.databases import create_database, drop_database
from devstack.ledger_services import LedgerService, running
from devstack.ports import LOOPBACK, free_port
from devstack.stack import LocalStack
from ledger.auth.local import LocalCredentials

PROMPTLY_S = 10.0


@dataclass(frozen=True)
class RunningLedger:
    command_server: LedgerService
    projector: LedgerService
    query_server: LedgerService
    command_metrics: str
    query_metrics: str
    topic: str
    database_url: str
    # The gRPC servers' TLS and token credentials; None: plaintext, no tokens.
    credentials: LocalCredentials | None = None


@asynccontextmanager
async def running_ledger(
    stack: LocalStack,
    data_dir: Path,
    *,
    extra_env: Mapping[str, str] | None = None,
    secure: bool = False,
) -> AsyncIterator[RunningLedger]:
    """Command server, projector and query server, started in that order (as `make run` does)
    with `extra_env` added to each one's environment, and stopped in reverse. `secure`: the gRPC
    servers serve TLS and require tokens, with credentials made in `data_dir`/credentials."""
    topic = f"eco_events_{uuid.uuid4().hex[:8]}"
    ensure_event_topic(AdminClient({"bootstrap.servers": stack.kafka_bootstrap}), topic, 6)
    database_url = await create_database(stack, f"eco_{uuid.uuid4().hex[:12]}")
    command_metrics = f"{LOOPBACK}:{free_port()}"
    query_metrics = f"{LOOPBACK}:{free_port()}"
    env = dict(extra_env or {})
    credentials = local_credentials(data_dir) if secure else None
    ledger = RunningLedger(
        command_server=LedgerService.command_server(
            stack,
            data_dir,
            topic=topic,
            extra_env={**env, "LEDGER_METRICS_ADDR": command_metrics},
            secure=credentials,
        ),
        projector=LedgerService.projector(
            stack, data_dir, topic=topic, extra_env={**env, "LEDGER_DATABASE_URL": database_url}
        ),
        query_server=LedgerService.query_server(
            stack,
            data_dir,
            topic=topic,
            database_url=database_url,
            extra_env={**env, "LEDGER_METRICS_ADDR": query_metrics},
            secure=credentials,
        ),
        command_metrics=command_metrics,
        query_metrics=query_metrics,
        topic=topic,
        database_url=database_url,
        credentials=credentials,
    )
    try:
        with running((ledger.command_server, ledger.projector, ledger.query_server)):
            yield ledger
    finally:
        await drop_database(stack, database_url)
