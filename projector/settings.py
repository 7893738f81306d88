"""The projector's configuration, read once from the environment by the composition root."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.environment import (
    LOCAL_DATABASE_URL,
    LOCAL_KAFKA_BOOTSTRAP,
    LOCAL_SCHEMA_REGISTRY_URL,
    env_host_port,
    env_int,
    env_text,
)
from ledger.environment import HostPort as HostPort
from ledger.environment import SettingsError as SettingsError
from ledger.events.topic import ACCOUNT_EVENTS_TOPIC
from ledger.read_model_contract import SCHEMA


@dataclass(frozen=True, slots=True)
class Settings:
    kafka_bootstrap: str = LOCAL_KAFKA_BOOTSTRAP
    registry_url: str = LOCAL_SCHEMA_REGISTRY_URL
    database_url: str = LOCAL_DATABASE_URL
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
            registry_url=env_text(env, "LEDGER_SCHEMA_REGISTRY_URL", defaults.registry_url),
            database_url=env_text(env, "LEDGER_DATABASE_URL", defaults.database_url),
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
