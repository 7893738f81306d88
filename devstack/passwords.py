"""The local stack's passwords: made at random on first use and kept in its data directory, so
that a restarted stack (and the services pointed at it) go on using the same ones."""

from __future__ import annotations

import secrets
from pathlib import Path


def password_file(directory: Path, name: str) -> Path:
    return directory / f"{name}.password"


def local_password(directory: Path, name: str) -> str:
    """The password kept in `password_file` (made if missing, readable by us only)."""
    path = password_file(directory, name)
    if not path.is_file():
        directory.mkdir(parents=True, exist_ok=True)
        path.touch(mode=0o600)
        path.write_text(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()
