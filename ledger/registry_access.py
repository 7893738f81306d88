"""How the services reach the schema registry: its URL, the CA that signs its certificate, and
the user and password of HTTP basic authentication.

Credentials written into the URL (`https://user:password@host/...`) are taken out of it when
it is read, so the URL the client holds, and every message that quotes it, carries none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import SplitResult, unquote, urlsplit, urlunsplit

from ledger.environment import LOCAL_SCHEMA_REGISTRY_URL, SettingsError
from ledger.kafka_security import read_secret_file
from ledger.redaction import REDACTED, scrub


@dataclass(frozen=True, slots=True)
class RegistryAccess:
    """The registry's URL (without credentials), CA file and `user:password`; the repr hides
    the password."""

    url: str = LOCAL_SCHEMA_REGISTRY_URL
    ca_location: str | None = None
    user_info: str | None = field(default=None, repr=False)

    def client_config(self) -> dict[str, Any]:
        """The configuration of confluent-kafka's SchemaRegistryClient."""
        config: dict[str, Any] = {"url": self.url}
        if self.ca_location is not None:
            config["ssl.ca.location"] = self.ca_location
        if self.user_info is not None:
            config["basic.auth.credentials.source"] = "USER_INFO"
            config["basic.auth.user.info"] = self.user_info
        return config

    def scrub(self, text: str) -> str:
        """`text` without the password (for a registry client's error message)."""
        password = None if self.user_info is None else self.user_info.partition(":")[2]
        return scrub(text, [password, self.user_info])

    def __repr__(self) -> str:
        user = None if self.user_info is None else f"{self.user_info.partition(':')[0]}:{REDACTED}"
        return f"RegistryAccess(url={self.url!r}, ca_location={self.ca_location!r}, user={user!r})"


def registry_access(env: Mapping[str, str] | None = None) -> RegistryAccess:
    """LEDGER_SCHEMA_REGISTRY_URL, _CA and _USER_INFO (or _USER_INFO_FILE), checked."""
    env = os.environ if env is None else env
    raw_url = env.get("LEDGER_SCHEMA_REGISTRY_URL") or LOCAL_SCHEMA_REGISTRY_URL
    url, in_url = _without_user_info(raw_url)
    sources = [
        name
        for name, given in (
            ("credentials in LEDGER_SCHEMA_REGISTRY_URL", in_url),
            ("LEDGER_SCHEMA_REGISTRY_USER_INFO", env.get("LEDGER_SCHEMA_REGISTRY_USER_INFO")),
            (
                "LEDGER_SCHEMA_REGISTRY_USER_INFO_FILE",
                env.get("LEDGER_SCHEMA_REGISTRY_USER_INFO_FILE"),
            ),
        )
        if given
    ]
    if len(sources) > 1:
        raise SettingsError(
            f"{' and '.join(sources)} both give the registry's credentials: use one"
        )
    user_info = in_url or env.get("LEDGER_SCHEMA_REGISTRY_USER_INFO") or None
    path = env.get("LEDGER_SCHEMA_REGISTRY_USER_INFO_FILE") or None
    if path is not None:
        user_info = read_secret_file("LEDGER_SCHEMA_REGISTRY_USER_INFO_FILE", path)
    if user_info is not None and ":" not in user_info:
        raise SettingsError(
            "the registry's credentials must be user:password (LEDGER_SCHEMA_REGISTRY_USER_INFO)"
        )
    ca = env.get("LEDGER_SCHEMA_REGISTRY_CA") or None
    if ca is not None:
        if not url.startswith("https://"):
            raise SettingsError(
                "LEDGER_SCHEMA_REGISTRY_CA is set but LEDGER_SCHEMA_REGISTRY_URL is not https://"
            )
        if not os.access(ca, os.R_OK):
            raise SettingsError(f"LEDGER_SCHEMA_REGISTRY_CA: cannot read {ca}")
    if not url.startswith(("http://", "https://")):
        raise SettingsError(
            f"LEDGER_SCHEMA_REGISTRY_URL must start with http:// or https://, got {url!r}"
        )
    return RegistryAccess(url, ca, user_info)


def _without_user_info(url: str) -> tuple[str, str | None]:
    """`url` without its `user:password@`, and that user info (decoded) if it had one."""
    try:
        parts = urlsplit(url)
    except ValueError:
        raise SettingsError("LEDGER_SCHEMA_REGISTRY_URL is not a URL") from None
    if "@" not in parts.netloc:
        return url, None
    userinfo, _, host = parts.netloc.rpartition("@")
    user, _, password = userinfo.partition(":")
    bare = urlunsplit(SplitResult(parts.scheme, host, parts.path, parts.query, parts.fragment))
    return bare, f"{unquote(user)}:{unquote(password)}"
