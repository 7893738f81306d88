"""Child processes of the stack: own session, output in a log file, polite then hard stop."""

from __future__ import annotations

import contextlib
import os
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any, BinaryIO

from devstack.errors import StackError, StartCancelled

_TAIL_LINES = 6
_TAIL_LINE_CHARS = 240
_BANNER = "===== devstack:"


@dataclass(frozen=True)
class RunAs:
    """An unprivileged system account to run a child as (PostgreSQL refuses to run as root)."""

    name: str
    uid: int
    gid: int


def log_tail(log_file: Path, lines: int = _TAIL_LINES) -> str:
    """The last lines the current run wrote to `log_file`, joined into one line."""
    try:
        text = log_file.read_text(errors="replace")
    except OSError:
        return "(no log output)"
    # Only the latest run: a log file collects every start of a component on the same data.
    text = text.rsplit(_BANNER, 1)[-1]
    kept = [line.strip()[:_TAIL_LINE_CHARS] for line in text.splitlines()[1:] if line.strip()]
    return " | ".join(kept[-lines:]) or "(no log output)"


def child_pids(pid: int) -> set[int]:
    """The pids of the processes whose parent is `pid` (a supervisor's workers)."""
    children = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            fields = _stat_fields(int(entry.name))
            if fields is not None and int(fields[1]) == pid:
                children.add(int(entry.name))
    return children


def alive(pids: Iterable[int]) -> list[int]:
    """Those of `pids` still running (a zombie, ended but not yet waited for, is not)."""
    return [pid for pid in pids if (fields := _stat_fields(pid)) is not None and fields[0] != "Z"]


def _stat_fields(pid: int) -> list[str] | None:
    """The fields of /proc/`pid`/stat after the command name (state, ppid, ...); None if gone."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # The command name may contain spaces and parentheses: fields follow the last ')'.
    return stat.rsplit(")", 1)[1].split()


def clean_environment(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without settings that would point our tools elsewhere."""
    env = {
        name: value
        for name, value in os.environ.items()
        # PG* would redirect psql/pg_isready, JAVA_TOOL_OPTIONS and _JAVA_OPTIONS would change
        # every JVM's heap and flags behind our back.
        if not name.startswith("PG") and name not in {"JAVA_TOOL_OPTIONS", "_JAVA_OPTIONS"}
    }
    env.update(extra or {})
    return env


def _banner(log: BinaryIO, argv: Sequence[str]) -> None:
    stamp = datetime.now().isoformat(timespec="seconds")
    log.write(f"\n{_BANNER} {stamp} {shlex.join(argv)}\n".encode())
    log.flush()


def _child_options(
    log: BinaryIO, env: Mapping[str, str] | None, cwd: Path | None, run_as: RunAs | None
) -> dict[str, Any]:
    """How every child starts: no input, its output in `log`, as `run_as` when given."""
    return {
        "stdin": subprocess.DEVNULL,
        "stdout": log,
        "stderr": subprocess.STDOUT,
        "env": dict(env) if env is not None else None,
        "cwd": cwd,
        "user": run_as.uid if run_as else None,
        "group": run_as.gid if run_as else None,
        # Without it the child would keep root's supplementary groups.
        "extra_groups": [] if run_as else None,
    }


def run_tool(
    argv: Sequence[str],
    *,
    log_file: Path,
    what: str,
    timeout: float,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
    run_as: RunAs | None = None,
) -> None:
    """Run a short-lived helper (initdb, Kafka's StorageTool...) with its output in `log_file`."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    with log_file.open("ab") as log:
        _banner(log, argv)
        try:
            result = subprocess.run(
                list(argv),
                **_child_options(log, env, cwd, run_as),
                timeout=timeout,
                check=False,
            )
        except FileNotFoundError:
            raise StackError(f"{what}: {argv[0]} not found") from None
        except subprocess.TimeoutExpired:
            raise StackError(
                f"{what} did not finish within {timeout:.0f}s; log: {log_file}; "
                f"last lines: {log_tail(log_file)}"
            ) from None
    if result.returncode != 0:
        raise StackError(
            f"{what} failed with exit code {result.returncode}; log: {log_file}; "
            f"last lines: {log_tail(log_file)}"
        )


class ManagedProcess:
    """One long-running child: launched in its own session so that the whole process group can
    be killed (PostgreSQL's backends outlive a SIGKILLed postmaster otherwise), and so that a
    Ctrl-C in the terminal reaches only us and we stop the children in a sensible order."""

    def __init__(
        self,
        name: str,
        log_file: Path,
        *,
        stop_signal: signal.Signals = signal.SIGTERM,
        stop_timeout: float = 30.0,
    ) -> None:
        self.name = name
        self.log_file = log_file
        self._stop_signal = stop_signal
        self._stop_timeout = stop_timeout
        self._popen: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    @property
    def pid(self) -> int | None:
        popen = self._popen
        return popen.pid if popen is not None and popen.poll() is None else None

    def is_running(self) -> bool:
        popen = self._popen
        return popen is not None and popen.poll() is None

    def launch(
        self,
        argv: Sequence[str],
        *,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
        run_as: RunAs | None = None,
    ) -> None:
        # Two threads starting the same component must not both launch it.
        with self._lock:
            if self._popen is not None and self._popen.poll() is None:
                raise StackError(f"{self.name} is already running (pid {self._popen.pid})")
            self.log_file.parent.mkdir(parents=True, exist_ok=True)
            with self.log_file.open("ab") as log:
                _banner(log, argv)
                try:
                    self._popen = subprocess.Popen(
                        list(argv), **_child_options(log, env, cwd, run_as), start_new_session=True
                    )
                except FileNotFoundError:
                    raise StackError(f"{self.name}: {argv[0]} not found") from None

    def wait_ready(
        self,
        probe: Callable[[], bool],
        *,
        timeout: float,
        what: str,
        cancel: threading.Event | None = None,
        then: Callable[[], None] | None = None,
    ) -> None:
        """Poll `probe` until it answers True, then run `then` (setup that needs the running
        child: users, roles); kill the child and raise if it never is ready or `then` fails."""
        deadline = time.monotonic() + timeout
        delay = 0.05
        try:
            while True:
                popen = self._popen
                if popen is None or popen.poll() is not None:
                    code = None if popen is None else popen.returncode
                    raise StackError(
                        f"{self.name} exited with code {code} before it was ready; "
                        f"log: {self.log_file}; last lines: {log_tail(self.log_file)}"
                    )
                if probe():
                    if then is not None:
                        then()
                    return
                if cancel is not None and cancel.is_set():
                    raise StartCancelled(f"{self.name}: start cancelled")
                if time.monotonic() > deadline:
                    raise StackError(
                        f"{self.name} did not become ready within {timeout:.0f}s ({what}); "
                        f"log: {self.log_file}; last lines: {log_tail(self.log_file)}"
                    )
                time.sleep(delay)
                delay = min(delay * 2, 0.5)
        except BaseException:
            self.kill()
            raise

    def wait(self, timeout: float) -> int:
        """Wait for the child to exit on its own and return its exit code (for one-shot runs)."""
        popen = self._popen
        if popen is None:
            raise StackError(f"{self.name} was never started")
        try:
            return popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise StackError(
                f"{self.name} did not exit within {timeout:.0f}s; log: {self.log_file}; "
                f"last lines: {log_tail(self.log_file)}"
            ) from None

    def stop(self) -> bool:
        """Ask the child to shut down cleanly; SIGKILL its process group after the timeout.

        Returns whether this call shut the child down cleanly (False if it had to be killed or
        was not running).
        """
        # No lock held while waiting: a kill() from another thread (or after a second Ctrl-C)
        # must be able to cut a slow shutdown short.
        popen = self._popen
        if popen is None:
            return False
        clean = False
        if popen.poll() is None:
            popen.send_signal(self._stop_signal)
            try:
                popen.wait(self._stop_timeout)
                clean = True
            except subprocess.TimeoutExpired:
                self._kill_group(popen)
                popen.wait()
        # A child that died on its own may have left its own children behind.
        self._kill_group(popen)
        return clean

    def kill(self) -> None:
        """SIGKILL the child and everything it started, like a crash of the machine would."""
        popen = self._popen
        if popen is None:
            return
        self._kill_group(popen)
        popen.wait()

    @staticmethod
    def _kill_group(popen: subprocess.Popen[bytes]) -> None:
        # The child is a session leader, so its pid is also its process group id.
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(popen.pid, signal.SIGKILL)
