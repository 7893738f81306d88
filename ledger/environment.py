"""Reading the services' settings from environment variables, with errors that name the variable.

Every reader takes the environment as a mapping (the services pass `os.environ`, tests a dict)
and treats an unset or empty variable as "use the default", so that compose files and shells
can leave a variable blank. What a value may be is checked here, once, so that a service with a
bad setting refuses to start (exit code 2) with a message that names the variable and what is
allowed, instead of failing later with a library's error.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TypeVar

_T = TypeVar("_T")


# The defaults of the addresses several services read: those of a local stack (`make run`).
# (Each service names its variables itself: tests/unit/test_compose.py reads them there.)
LOCAL_KAFKA_BOOTSTRAP = "127.0.0.1:9092"
LOCAL_SCHEMA_REGISTRY_URL = "http://127.0.0.1:8081/apis/ccompat/v7"
LOCAL_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/ledger"


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def _raw(env: Mapping[str, str], name: str) -> str | None:
    raw = env.get(name)
    return None if raw is None or raw == "" else raw


def _parsed(name: str, raw: str, parse: Callable[[str], _T], what: str) -> _T:
    try:
        return parse(raw)
    except ValueError:
        raise SettingsError(f"{name} must be {what}, got {raw!r}") from None


def env_text(env: Mapping[str, str], name: str, default: str) -> str:
    """`env[name]`, or `default` when unset or empty."""
    return _raw(env, name) or default


def env_int(
    env: Mapping[str, str],
    name: str,
    default: int,
    minimum: int = 0,
    maximum: int | None = None,
) -> int:
    """`env[name]` as an integer from `minimum` to `maximum`; `default` when unset or empty."""
    raw = _raw(env, name)
    if raw is None:
        return default
    value = _parsed(name, raw, int, "an integer")
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise SettingsError(f"{name} must be at most {maximum}, got {value}")
    return value


def env_seconds(env: Mapping[str, str], name: str, default: float) -> float:
    """`env[name]` as a finite, non-negative number of seconds; `default` when unset or empty."""
    raw = _raw(env, name)
    if raw is None:
        return default
    value = _parsed(name, raw, float, "a number of seconds")
    if not (math.isfinite(value) and value >= 0):  # NaN fails both
        raise SettingsError(f"{name} must be a non-negative number of seconds, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class HostPort:
    """An address to listen on, as `host:port` with a port from 1 to 65535."""

    host: str
    port: int

    @classmethod
    def parse(cls, name: str, text: str) -> HostPort:
        """`text` as host:port; the error names the variable `name` it came from."""
        host, _, port = text.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise SettingsError(f"{name} must be host:port, got {text!r}")
        return cls(host, int(port))

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def env_host_port(env: Mapping[str, str], name: str, default: HostPort) -> HostPort:
    """`env[name]` as host:port; `default` when unset or empty."""
    raw = _raw(env, name)
    return default if raw is None else HostPort.parse(name, raw)
