"""The query server's configuration, read once from the environment by the composition root."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

from ledger.environment import SettingsError, env_int
from ledger.events.topic import ACCOUNT_EVENTS_TOPIC

EVENT_TOPIC = ACCOUNT_EVENTS_TOPIC


def _seconds(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} must be a number of seconds, got {raw!r}") from None
    if not 0 <= value < float("inf"):  # also refuses NaN
        raise SettingsError(f"{name} must be a non-negative number of seconds, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    database_url: str = "postgresql://postgres@127.0.0.1:5432/ledger"
    listen: str = "127.0.0.1:50052"
    topic: str = EVENT_TOPIC
    # Only used for the high watermarks (lag) in GetProjectionStatus; None: lag is unknown.
    kafka_bootstrap: str | None = None
    # Small on purpose: one event loop cannot keep more than a few connections busy, and
    # PostgreSQL shares the same cores.
    pool_size: int = 4
    # How long a query with a consistency token waits when the call has no deadline.
    default_wait_seconds: float = 10.0
    grace_seconds: float = 5.0

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        defaults = cls()
        return cls(
            database_url=env.get("LEDGER_DATABASE_URL") or defaults.database_url,
            listen=env.get("LEDGER_QUERY_ADDR") or defaults.listen,
            topic=env.get("LEDGER_TOPIC") or defaults.topic,
            kafka_bootstrap=env.get("LEDGER_KAFKA_BOOTSTRAP_SERVERS") or None,
            pool_size=env_int(env, "LEDGER_QUERY_POOL_SIZE", defaults.pool_size, minimum=1),
            default_wait_seconds=_seconds(
                env, "LEDGER_QUERY_DEFAULT_WAIT_SECONDS", defaults.default_wait_seconds
            ),
        )
