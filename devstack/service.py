"""What every supervised process of the dev stack looks like."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol


class Service(Protocol):
    """A process the stack starts, watches and stops: Kafka, the registry, PostgreSQL, and the
    Ledger servers themselves."""

    @property
    def name(self) -> str: ...

    @property
    def address(self) -> str: ...

    @property
    def log_file(self) -> Path: ...

    def start(self) -> None:
        """Start on the existing data and return once ready; raise StackError otherwise."""

    def stop(self) -> None:
        """Shut down cleanly (SIGTERM-like), SIGKILL after a timeout; no-op when not running."""

    def kill(self) -> None:
        """SIGKILL, as a crash would: for fault tests."""

    def is_running(self) -> bool: ...
