"""Go programs the project uses (grpcurl, protoc plugins, the compose-spec validator).

Each is built with `go install <module>@<pinned version>` from the Go module proxy into
`<cache>/bin` (LEDGER_CACHE_DIR, default the git-ignored `.cache/`) and reused while its build
info names the pinned version. Go's own caches live under `<cache>/go` too, so a second run
builds nothing and a clean clone never depends on what happens to be in `~/go`.
"""

from __future__ import annotations

import fcntl
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from devstack.errors import StackError
from devstack.locations import default_cache_dir

# A cold build of grpcurl (gRPC, protobuf, protoreflect) takes minutes on two cores.
INSTALL_TIMEOUT = 1200.0


@dataclass(frozen=True, slots=True)
class GoTool:
    """A `main` package to build: saved as `<cache>/bin/<name>`."""

    name: str
    package: str
    version: str


GRPCURL = GoTool("grpcurl", "github.com/fullstorydev/grpcurl/cmd/grpcurl", "v1.9.4")
# protoc-gen-go must not be newer than the google.golang.org/protobuf in clients/go/go.mod.
PROTOC_GEN_GO = GoTool("protoc-gen-go", "google.golang.org/protobuf/cmd/protoc-gen-go", "v1.36.12")
PROTOC_GEN_GO_GRPC = GoTool(
    "protoc-gen-go-grpc", "google.golang.org/grpc/cmd/protoc-gen-go-grpc", "v1.6.2"
)
# The Compose Specification's reference loader: what `docker compose config` is built on.
COMPOSE_SPEC = GoTool("compose-spec", "github.com/compose-spec/compose-go/v2/cmd", "v2.16.2")


def go_executable() -> str:
    go = shutil.which("go")
    if go is None:
        raise StackError("the go command is not installed (Go 1.25+ is needed to build Go tools)")
    return go


def go_environment(cache_dir: Path | None = None) -> dict[str, str]:
    """This process's environment with Go's module and build caches under `<cache>/go`."""
    go_dir = (cache_dir or default_cache_dir()).absolute() / "go"
    # -mod=mod: resolve modules through the module proxy (GOPROXY) instead of failing on a
    # go.sum entry it lacks; -modcacherw: Go makes its module cache read-only otherwise, which
    # would stop a plain `rm -rf .cache`.
    flags = " ".join(filter(None, [os.environ.get("GOFLAGS", ""), "-mod=mod", "-modcacherw"]))
    return {
        **os.environ,
        "GOPATH": str(go_dir),
        "GOMODCACHE": str(go_dir / "pkg" / "mod"),
        "GOCACHE": str(go_dir / "build"),
        "GOFLAGS": flags,
    }


def ensure_go_tool(tool: GoTool, cache_dir: Path | None = None) -> Path:
    """The path of `tool`'s binary, built with `go install` first unless already there."""
    cache_dir = (cache_dir or default_cache_dir()).absolute()
    binary = cache_dir / "bin" / tool.name
    if _built_from(binary, tool):
        return binary
    binary.parent.mkdir(parents=True, exist_ok=True)
    with _install_lock(cache_dir):
        if _built_from(binary, tool):  # another process built it while we waited
            return binary
        _install(tool, binary, cache_dir)
    return binary


def _built_from(binary: Path, tool: GoTool) -> bool:
    if not binary.is_file():
        return False
    go = shutil.which("go")
    if go is None:
        return True  # cannot check the version, and could not build another anyway
    result = subprocess.run(
        [go, "version", "-m", str(binary)], capture_output=True, text=True, check=False
    )
    # Build info lines: "\tpath\t<main package>" and "\tmod\t<its module>\t<version>\t<sum>".
    info = {
        fields[1]: fields[2:]
        for line in result.stdout.splitlines()
        if len(fields := line.split("\t")) > 2
    }
    return info.get("path") == [tool.package] and info.get("mod", [])[1:2] == [tool.version]


def _install(tool: GoTool, binary: Path, cache_dir: Path) -> None:
    # Built into a scratch GOBIN and renamed into place, so that an interrupted build never
    # leaves a half-written binary where the next run would take it for a good one.
    with tempfile.TemporaryDirectory(dir=binary.parent, prefix=".install-") as scratch:
        env: Mapping[str, str] = {**go_environment(cache_dir), "GOBIN": scratch}
        command = [go_executable(), "install", f"{tool.package}@{tool.version}"]
        try:
            result = subprocess.run(
                command,
                env=env,
                capture_output=True,
                text=True,
                check=False,
                timeout=INSTALL_TIMEOUT,
            )
        except subprocess.TimeoutExpired:
            raise StackError(
                f"`{' '.join(command)}` did not finish within {INSTALL_TIMEOUT:.0f}s"
            ) from None
        built = list(Path(scratch).iterdir())
        if result.returncode != 0 or len(built) != 1:
            raise StackError(
                f"`{' '.join(command)}` failed (exit code {result.returncode}): "
                f"{result.stderr.strip()[-2000:]}"
            )
        os.replace(built[0], binary)


@contextmanager
def _install_lock(cache_dir: Path) -> Iterator[None]:
    # Two test sessions (or a test and a benchmark) may want the same tool at the same time.
    with (cache_dir / ".go-install.lock").open("w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
