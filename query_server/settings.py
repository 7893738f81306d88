"""The query server's configuration, read once from the environment by the composition root."""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ledger.database_access import DatabaseAccess, database_access
from ledger.environment import (
    SettingsError,
    env_int,
    env_seconds,
    env_text,
)
from ledger.events.topic import ACCOUNT_EVENTS_TOPIC
from ledger.kafka_security import KafkaSecurity, kafka_security
from ledger.server_limits import ServerLimits, server_limits

EVENT_TOPIC = ACCOUNT_EVENTS_TOPIC


def available_cpus(cgroup_cpu_max: Path = Path("/sys/fs/cgroup/cpu.max")) -> int:
    """The CPUs this process may use: its affinity, bounded by a cgroup v2 CPU quota (a
    container limited to 2 CPUs on a 64-core host still sees 64 in its affinity)."""
    affinity = getattr(os, "sched_getaffinity", None)  # Linux only
    cpus = len(affinity(0)) if affinity is not None else os.cpu_count() or 1
    try:
        quota, period = cgroup_cpu_max.read_text().split()
        if quota != "max":
            cpus = min(cpus, max(1, math.ceil(int(quota) / int(period))))
    except (OSError, ValueError):
        pass  # no cgroup v2 quota to honour
    return cpus


def _workers(env: Mapping[str, str], default: int) -> int:
    if (env.get("LEDGER_QUERY_WORKERS") or "").strip().lower() == "auto":
        return available_cpus()
    return env_int(env, "LEDGER_QUERY_WORKERS", default, minimum=1)


def _port_of(listen: str) -> str:
    return listen.rpartition(":")[2]


@dataclass(frozen=True, slots=True)
class Settings:
    database: DatabaseAccess = DatabaseAccess()  # noqa: RUF009 (frozen, so safe to share)
    listen: str = "127.0.0.1:50052"
    topic: str = EVENT_TOPIC
    # Only used for the high watermarks (lag) in GetProjectionStatus; None: lag is unknown.
    kafka_bootstrap: str | None = None
    kafka_security: KafkaSecurity = KafkaSecurity()  # noqa: RUF009 (frozen, so safe to share)
    # Small on purpose: one event loop cannot keep more than a few connections busy, and
    # PostgreSQL shares the same cores.
    pool_size: int = 4
    # How long a query with a consistency token waits when the call has no deadline.
    default_wait_seconds: float = 10.0
    # The longest any token wait lasts, whatever the call's deadline: a waiting call holds a
    # slot and memory, and a read model this far behind is better reported than waited for.
    max_wait_seconds: float = 30.0
    # Calls waiting for a consistency token at once (per worker); past it RESOURCE_EXHAUSTED.
    max_waiting_calls: int = 1000
    # WatchAccount streams at once (per worker); each is a waiter on the checkpoints and a
    # database read per change of its partition, so their number must stay within what the
    # pool (LEDGER_QUERY_POOL_SIZE) keeps up with.
    max_watches: int = 1000
    server_limits: ServerLimits = ServerLimits()  # noqa: RUF009 (frozen, so safe to share)
    grace_seconds: float = 5.0
    # The key that wraps every account's data key: without it (or without Kafka) sealed owners
    # cannot be shown (query_server/owners.py).
    key_encryption_key_file: str | None = None
    # Processes serving the port together (SO_REUSEPORT): one grpc.aio event loop keeps about
    # one core busy, whatever the machine has. 1 serves from this very process. Not more by
    # default: at start-up a worker may still be connecting to the database after another one
    # already answers SERVING, and on a machine without a spare core workers gain nothing.
    workers: int = 1

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()
        settings = cls(
            # LEDGER_DATABASE_URL, LEDGER_DATABASE_PASSWORD(_FILE)
            database=database_access(env),
            listen=env_text(env, "LEDGER_QUERY_ADDR", defaults.listen),
            topic=env_text(env, "LEDGER_TOPIC", defaults.topic),
            kafka_bootstrap=env.get("LEDGER_KAFKA_BOOTSTRAP_SERVERS") or None,
            # LEDGER_KAFKA_SECURITY_PROTOCOL, LEDGER_KAFKA_SASL_*, LEDGER_KAFKA_SSL_*,
            # LEDGER_KAFKA_CONFIG_FILE
            kafka_security=kafka_security(env),
            pool_size=env_int(env, "LEDGER_QUERY_POOL_SIZE", defaults.pool_size, minimum=1),
            default_wait_seconds=env_seconds(
                env, "LEDGER_QUERY_DEFAULT_WAIT_SECONDS", defaults.default_wait_seconds
            ),
            max_wait_seconds=env_seconds(
                env, "LEDGER_QUERY_MAX_WAIT_SECONDS", defaults.max_wait_seconds
            ),
            max_waiting_calls=env_int(
                env, "LEDGER_QUERY_MAX_WAITING_CALLS", defaults.max_waiting_calls, minimum=1
            ),
            max_watches=env_int(env, "LEDGER_QUERY_MAX_WATCHES", defaults.max_watches, minimum=1),
            # LEDGER_GRPC_*
            server_limits=server_limits(env),
            key_encryption_key_file=env.get("LEDGER_KEY_ENCRYPTION_KEY_FILE") or None,
            workers=_workers(env, defaults.workers),
        )
        if settings.workers > 1 and _port_of(settings.listen) == "0":
            # Each worker would bind a port of its own, and nobody would know which.
            raise SettingsError(
                "LEDGER_QUERY_ADDR needs a fixed port when LEDGER_QUERY_WORKERS is more than 1, "
                f"got {settings.listen!r}"
            )
        return settings
