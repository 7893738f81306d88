"""How the projector and the query server reach PostgreSQL: the libpq-style URL asyncpg reads
(host, database, role, `sslmode`, `sslrootcert`, ...) and the role's password, kept out of it.

The password comes from LEDGER_DATABASE_PASSWORD or LEDGER_DATABASE_PASSWORD_FILE (or libpq's
own PGPASSFILE, which asyncpg reads), so the URL can be logged: `display_url` hides a password
written into it anyway, and `scrub` hides the password in a driver's message.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from ledger.environment import LOCAL_DATABASE_URL, SettingsError
from ledger.kafka_security import read_secret_file
from ledger.redaction import redact_url, scrub

SSL_MODES = ("disable", "allow", "prefer", "require", "verify-ca", "verify-full")


@dataclass(frozen=True, slots=True)
class DatabaseAccess:
    url: str = LOCAL_DATABASE_URL
    password: str | None = field(default=None, repr=False)

    @property
    def display_url(self) -> str:
        """The URL as it may be logged or returned: without a password."""
        return redact_url(self.url)

    def connect_args(self) -> dict[str, Any]:
        """The keyword arguments of asyncpg.connect/create_pool that say where and as whom."""
        args: dict[str, Any] = {"dsn": self.url}
        if self.password is not None:
            args["password"] = self.password
        return args

    def scrub(self, text: str) -> str:
        """`text` (a driver's message) without the password."""
        password = urlsplit(self.url).password if "@" in self.url else None
        return scrub(text, [self.password, password])

    def __repr__(self) -> str:
        return f"DatabaseAccess({self.display_url!r})"


def database_access(
    env: Mapping[str, str] | None = None, default_url: str = LOCAL_DATABASE_URL
) -> DatabaseAccess:
    """LEDGER_DATABASE_URL and LEDGER_DATABASE_PASSWORD (or _FILE), checked."""
    env = os.environ if env is None else env
    url = env.get("LEDGER_DATABASE_URL") or default_url
    try:
        parts = urlsplit(url)
        in_url = parts.password
    except ValueError:
        raise SettingsError("LEDGER_DATABASE_URL is not a URL") from None
    if parts.scheme not in ("postgresql", "postgres"):
        raise SettingsError(
            f"LEDGER_DATABASE_URL must start with postgresql://, got {redact_url(url)!r}"
        )
    password = env.get("LEDGER_DATABASE_PASSWORD") or None
    path = env.get("LEDGER_DATABASE_PASSWORD_FILE") or None
    given = [
        name
        for name, value in (
            ("a password in LEDGER_DATABASE_URL", in_url),
            ("LEDGER_DATABASE_PASSWORD", password),
            ("LEDGER_DATABASE_PASSWORD_FILE", path),
        )
        if value
    ]
    if len(given) > 1:
        raise SettingsError(f"{' and '.join(given)} both give the database password: use one")
    if path is not None:
        password = read_secret_file("LEDGER_DATABASE_PASSWORD_FILE", path)
    query = dict(parse_qsl(parts.query))
    mode = query.get("sslmode")
    if mode is not None and mode not in SSL_MODES:
        raise SettingsError(
            f"sslmode in LEDGER_DATABASE_URL must be one of {', '.join(SSL_MODES)}, got {mode!r}"
        )
    for key in ("sslrootcert", "sslcert", "sslkey"):
        file = query.get(key)
        if file not in (None, "system") and not os.access(file, os.R_OK):
            raise SettingsError(f"{key} in LEDGER_DATABASE_URL: cannot read {file}")
    return DatabaseAccess(url, password)
