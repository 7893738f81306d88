"""Fetching Kafka's and Apicurio Registry's jars from Maven Central, once, into the cache dir.

Each distribution is assembled in a staging folder and renamed into place when complete, so a
folder named after a version in the cache is always usable and an interrupted fetch is redone.
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import tarfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from devstack.errors import StackError

KAFKA_VERSION = "4.4.0"
LOG4J_VERSION = "2.26.1"
# kafka_2.13 pulls slf4j-api 1.7, which cannot see log4j's SLF4J 2 provider: pin a 2.x API.
SLF4J_VERSION = "2.0.17"
REGISTRY_VERSION = "3.3.3"
REGISTRY_ARTIFACT = f"io.apicurio:apicurio-registry-app:{REGISTRY_VERSION}:tar.gz:all"
# Maven 3.8 would pick an old default version of the plugin; pin one known to work.
DEPENDENCY_PLUGIN = "org.apache.maven.plugins:maven-dependency-plugin:3.11.0"
MVN_TIMEOUT = 900.0

_KAFKA_POM = f"""<?xml version="1.0" encoding="UTF-8"?>
<!-- Written by devstack: the classpath of a Kafka {KAFKA_VERSION} broker with log4j2 logging. -->
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>ledger.devstack</groupId>
  <artifactId>kafka-classpath</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId>
      <artifactId>kafka_2.13</artifactId>
      <version>{KAFKA_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId>
      <artifactId>slf4j-api</artifactId>
      <version>{SLF4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-core</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId>
      <artifactId>log4j-slf4j2-impl</artifactId>
      <version>{LOG4J_VERSION}</version>
    </dependency>
  </dependencies>
</project>
"""


def kafka_libs(cache_dir: Path) -> Path:
    """Folder of the broker's jars (use it as `<folder>/*` classpath); fetched if missing."""
    home = _ensure(cache_dir, f"kafka-{KAFKA_VERSION}", _fetch_kafka)
    return home / "libs"


def registry_home(cache_dir: Path) -> Path:
    """Folder holding the registry's `quarkus-run.jar`; fetched and unpacked if missing."""
    return _ensure(cache_dir, f"apicurio-registry-{REGISTRY_VERSION}", _fetch_registry)


def fetch_all(cache_dir: Path) -> None:
    """Make sure every distribution the stack runs is in the cache."""
    kafka_libs(cache_dir)
    registry_home(cache_dir)


def is_cached(cache_dir: Path) -> bool:
    return (cache_dir / f"kafka-{KAFKA_VERSION}").is_dir() and (
        cache_dir / f"apicurio-registry-{REGISTRY_VERSION}"
    ).is_dir()


def _ensure(cache_dir: Path, name: str, populate: Callable[[Path], None]) -> Path:
    target = cache_dir / name
    if target.is_dir():
        return target
    cache_dir.mkdir(parents=True, exist_ok=True)
    with _cache_lock(cache_dir):
        # Another process (a parallel test run, `make run`) may have fetched it meanwhile.
        if target.is_dir():
            return target
        staging = cache_dir / f".{name}.partial"
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        try:
            populate(staging)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        staging.rename(target)
    return target


@contextmanager
def _cache_lock(cache_dir: Path) -> Iterator[None]:
    # Concurrent mvn runs would also race on the shared local Maven repository.
    with (cache_dir / ".fetch.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _fetch_kafka(staging: Path) -> None:
    (staging / "pom.xml").write_text(_KAFKA_POM)
    _mvn(
        staging,
        f"{DEPENDENCY_PLUGIN}:copy-dependencies",
        f"-DoutputDirectory={staging / 'libs'}",
        "-DincludeScope=runtime",
        what=f"org.apache.kafka:kafka_2.13:{KAFKA_VERSION}",
    )
    if not any((staging / "libs").glob(f"kafka_2.13-{KAFKA_VERSION}.jar")):
        raise StackError(f"mvn finished but kafka_2.13-{KAFKA_VERSION}.jar is not in {staging}")


def _fetch_registry(staging: Path) -> None:
    # dependency:copy without a pom: resolving the tar.gz's transitive dependencies would need
    # repositories other than Maven Central, and the tarball already bundles all of them.
    _mvn(
        staging,
        f"{DEPENDENCY_PLUGIN}:copy",
        f"-Dartifact={REGISTRY_ARTIFACT}",
        f"-DoutputDirectory={staging}",
        what=REGISTRY_ARTIFACT,
    )
    tarballs = list(staging.glob("apicurio-registry-app-*.tar.gz"))
    if len(tarballs) != 1:
        raise StackError(f"mvn finished but no registry tarball is in {staging}")
    try:
        with tarfile.open(tarballs[0]) as archive:
            archive.extractall(staging, filter="data")
    except (tarfile.TarError, OSError) as error:
        raise StackError(f"cannot unpack {tarballs[0]}: {error}") from None
    tarballs[0].unlink()
    if not (staging / "quarkus-run.jar").is_file():
        raise StackError(f"{REGISTRY_ARTIFACT} has no quarkus-run.jar at its top level")


def _mvn(workdir: Path, *args: str, what: str) -> None:
    mvn = shutil.which("mvn")
    if mvn is None:
        raise StackError(
            f"mvn not found: it is needed once to fetch {what} into the cache; "
            "install Maven (apt-get install maven)"
        )
    # Beside the staging folder, which is removed when the fetch fails.
    log_file = workdir.parent / f"{workdir.name.strip('.').removesuffix('.partial')}.mvn.log"
    env = {k: v for k, v in os.environ.items() if k not in {"JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS"}}
    with log_file.open("wb") as log:
        try:
            result = subprocess.run(
                [mvn, "--batch-mode", "--no-transfer-progress", *args],
                cwd=workdir,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                timeout=MVN_TIMEOUT,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise StackError(
                f"mvn did not fetch {what} within {MVN_TIMEOUT:.0f}s; output: {log_file}"
            ) from None
    if result.returncode != 0:
        raise StackError(
            f"mvn could not fetch {what} (exit code {result.returncode}): "
            f"{_first_error(log_file)}; full output: {log_file}"
        )
    log_file.unlink()


def _first_error(log_file: Path) -> str:
    text = log_file.read_text(errors="replace")
    for line in text.splitlines():
        if line.startswith("[ERROR]") and line.strip() != "[ERROR]":
            return re.sub(r"\s+", " ", line.removeprefix("[ERROR]").strip())[:400]
    return "no [ERROR] line in the output"
