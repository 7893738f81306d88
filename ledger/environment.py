"""Reading the services' settings from environment variables, with errors that name the variable."""

from __future__ import annotations

from collections.abc import Mapping


class SettingsError(ValueError):
    """A configuration value is missing or malformed; the message names the variable."""


def env_int(env: Mapping[str, str], name: str, default: int, minimum: int = 0) -> int:
    """`env[name]` as an integer of at least `minimum`; `default` when unset or empty."""
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from None
    if value < minimum:
        raise SettingsError(f"{name} must be at least {minimum}, got {value}")
    return value
