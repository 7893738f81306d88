"""Every released version of the event schema, oldest first (`schemas/history/`).

The log keeps events written with each of them forever, so each must stay readable by the
current schema, and the registry holds them all under BACKWARD_TRANSITIVE. They are kept here,
shipped with the package beside the live schema rather than among the tests, so that whatever
needs them (the tests that prove evolution against the real registry, a tool registering a
fresh registry's history) reads one copy. A released file is never edited: a change to the
schema is a new file, and the newest file is the live schema itself
(tests/unit/test_schema_history.py).
"""

from __future__ import annotations

import re
from importlib.resources import files
from importlib.resources.abc import Traversable

_FILE = re.compile(r"account_event_v(?P<version>[0-9]+)\.avsc")


def history_directory() -> Traversable:
    return files("ledger.events").joinpath("schemas", "history")


def released_schemas() -> list[tuple[int, str]]:
    """(version, schema JSON text) of every released version, in version order."""
    found = []
    for entry in history_directory().iterdir():
        match = _FILE.fullmatch(entry.name)
        if match is not None:
            found.append((int(match["version"]), entry.read_text("utf-8")))
    return sorted(found)
