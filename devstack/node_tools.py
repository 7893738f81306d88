"""The TypeScript client's npm dependencies (clients/typescript), installed by `npm ci`.

`npm ci` installs exactly what package-lock.json pins, into clients/typescript/node_modules; a
stamp there holds the lock file's hash, so the install happens once per change of the lock file,
not once per test run. npm's download cache lives under `<cache>/npm` (LEDGER_CACHE_DIR, default
the git-ignored `.cache/`), so a second install after `rm -rf node_modules` downloads nothing.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from devstack.errors import StackError
from devstack.locations import PROJECT_ROOT, default_cache_dir

TYPESCRIPT_CLIENT = PROJECT_ROOT / "clients" / "typescript"
INSTALL_TIMEOUT = 600.0
_STAMP = ".ledger-lock-sha256"


def executable(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise StackError(f"the {name} command is not installed (Node.js 20+ with npm is needed)")
    return found


def npm_environment(cache_dir: Path | None = None) -> dict[str, str]:
    """This process's environment with npm's cache under `<cache>/npm` and no update checks."""
    npm_cache = (cache_dir or default_cache_dir()).absolute() / "npm"
    return {
        **os.environ,
        "npm_config_cache": str(npm_cache),
        "npm_config_update_notifier": "false",
        "npm_config_fund": "false",
        "npm_config_audit": "false",
    }


def ensure_node_modules(client_dir: Path = TYPESCRIPT_CLIENT) -> Path:
    """`client_dir`/node_modules as package-lock.json pins it, installed with `npm ci` if the lock
    file changed since the last install (or there was none)."""
    lock_hash = hashlib.sha256((client_dir / "package-lock.json").read_bytes()).hexdigest()
    node_modules = client_dir / "node_modules"
    stamp = node_modules / _STAMP
    # Two processes (make's generate step and a test) must not run npm ci into one folder at once.
    with (client_dir / "package-lock.json").open("rb") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if stamp.exists() and stamp.read_text() == lock_hash:
            return node_modules
        # --ignore-scripts: no dependency needs an install script (protobufjs's only checks its
        # own version), and the package's `prepare` build is run where it is needed.
        result = subprocess.run(
            [executable("npm"), "ci", "--ignore-scripts", "--no-progress"],
            cwd=client_dir,
            env=npm_environment(),
            capture_output=True,
            text=True,
            check=False,
            timeout=INSTALL_TIMEOUT,
        )
        if result.returncode != 0:
            raise StackError(f"npm ci in {client_dir} failed: {result.stderr.strip()}")
        stamp.write_text(lock_hash)
    return node_modules
