"""Where the stack keeps downloaded jars and service data by default."""

from __future__ import annotations

import os
from pathlib import Path

# devstack/ sits at the top of the repository, next to the git-ignored .cache/ and .data/.
PROJECT_ROOT = Path(__file__).resolve().parent.parent


def default_cache_dir() -> Path:
    """Downloaded Kafka and registry distributions: `LEDGER_CACHE_DIR` or `<repo>/.cache`."""
    return _from_env("LEDGER_CACHE_DIR", PROJECT_ROOT / ".cache")


def default_data_dir() -> Path:
    """Data and logs of `python -m devstack run`: `LEDGER_DATA_DIR` or `<repo>/.data`."""
    return _from_env("LEDGER_DATA_DIR", PROJECT_ROOT / ".data")


def _from_env(name: str, default: Path) -> Path:
    value = os.environ.get(name, "").strip()
    return Path(value).expanduser().absolute() if value else default
