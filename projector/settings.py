"""The projector's configuration, read once from the environment by the composition root."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.database_access import DatabaseAccess, database_access
from ledger.environment import (
    LOCAL_KAFKA_BOOTSTRAP,
    env_host_port,
    env_int,
    env_text,
)
from ledger.environment import HostPort as HostPort
from ledger.environment import SettingsError as SettingsError
from ledger.events.topic import ACCOUNT_EVENTS_TOPIC
from ledger.kafka_security import KafkaSecurity, kafka_security
from ledger.read_model_contract import SCHEMA
from ledger.registry_access import RegistryAccess, registry_access

_ROLE_NAME = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def _role(env: Mapping[str, str], name: str) -> str | None:
    role = env.get(name) or None
    if role is not None and _ROLE_NAME.fullmatch(role) is None:
        raise SettingsError(
            f"{name} must be a plain role name (lower-case letters, digits, _), got {role!r}"
        )
    return role


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = LOCAL_KAFKA_BOOTSTRAP
    kafka_security: KafkaSecurity = KafkaSecurity()  # noqa: RUF009 (frozen, so safe to share)
    registry: RegistryAccess = RegistryAccess()  # noqa: RUF009 (frozen, so safe to share)
    database: DatabaseAccess = DatabaseAccess()  # noqa: RUF009 (frozen, so safe to share)
    reader_role: str | None = None
    """The role the query server connects as: the migrations grant it read access to the read
    model (None: grant nothing, the query server connects as a role that already can)."""
    topic: str = ACCOUNT_EVENTS_TOPIC
    http: HostPort = HostPort("127.0.0.1", 9464)  # noqa: RUF009 (frozen, so safe to share)
    # Larger batches gain little on a catch-up and hold the checkpoint locks longer
    # (docs/performance.md, "The read side").
    batch_max_events: int = 5000
    group_id: str = "read_model"
    schema: str = SCHEMA
    # librdkafka's default (45 s) leaves a crashed projector's partitions idle that long.
    session_timeout_ms: int = 6000
    """How soon the group notices a dead instance and moves its partitions (librdkafka's
    default when None)."""
    workers: int = 1
    """Projector processes in the consumer group, run by this one (projector/supervisor.py):
    each is bound by its own interpreter lock, so catching up on a big log goes faster with
    more, up to the cores and the topic's partitions. Worker i serves `http` with port + i."""

    @property
    def dead_letter_topic(self) -> str:
        return f"{self.topic}.dlq"

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()
        settings = cls(
            kafka_bootstrap=env_text(
                env, "LEDGER_KAFKA_BOOTSTRAP_SERVERS", defaults.kafka_bootstrap
            ),
            # LEDGER_KAFKA_SECURITY_PROTOCOL, LEDGER_KAFKA_SASL_*, LEDGER_KAFKA_SSL_*,
            # LEDGER_KAFKA_CONFIG_FILE
            kafka_security=kafka_security(env),
            # LEDGER_SCHEMA_REGISTRY_URL, LEDGER_SCHEMA_REGISTRY_CA,
            # LEDGER_SCHEMA_REGISTRY_USER_INFO(_FILE)
            registry=registry_access(env),
            # LEDGER_DATABASE_URL, LEDGER_DATABASE_PASSWORD(_FILE)
            database=database_access(env),
            reader_role=_role(env, "LEDGER_READ_MODEL_READER_ROLE"),
            topic=env_text(env, "LEDGER_TOPIC", defaults.topic),
            http=env_host_port(env, "LEDGER_PROJECTOR_HTTP", defaults.http),
            batch_max_events=env_int(
                env, "LEDGER_PROJECTOR_BATCH", defaults.batch_max_events, minimum=1
            ),
            group_id=env_text(env, "LEDGER_PROJECTOR_GROUP", defaults.group_id),
            session_timeout_ms=env_int(
                env, "LEDGER_PROJECTOR_SESSION_TIMEOUT_MS", defaults.session_timeout_ms, minimum=1
            ),
            workers=env_int(env, "LEDGER_PROJECTOR_WORKERS", defaults.workers, minimum=1),
        )
        last_port = settings.http.port + settings.workers - 1
        if settings.workers > 1 and last_port > 65535:
            raise SettingsError(
                f"LEDGER_PROJECTOR_WORKERS={settings.workers} needs the status ports "
                f"{settings.http.port}-{last_port} (LEDGER_PROJECTOR_HTTP and the ports after "
                "it), past 65535"
            )
        return settings
