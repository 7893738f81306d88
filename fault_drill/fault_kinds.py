"""The faults that are not a plain SIGKILL and restart: a takeover of the command server's shard
by a second instance, a pause (SIGSTOP, then SIGCONT) of a process, and a restart of the
command server from a snapshot with a long log behind it. Each records what it saw in the
fault's notes, and every promise it finds broken in the fault's failures (the drill fails).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import time
from pathlib import Path

from devstack.errors import StackError
from devstack.ledger_services import LedgerService, grpc_serving
from fault_drill.command_servers import CommandServers
from fault_drill.config import DrillConfig
from fault_drill.faults import Clock, Component, Fault, kill_and_restart, start_until_ready
from fault_drill.journal import EVENTS_PER_COMMAND, Journal
from ledger.auth.local import LocalCredentials

EXIT_FENCED = 3
"""The command server's exit code when another instance took its shard over."""
_BANNER = "===== devstack:"
_REBUILT = re.compile(r"rebuilt (\d+) accounts from (\d+) events")
_RESTORED = re.compile(
    r"restored partitions from snapshots in [\d.]+s, replayed from offsets (\{.*\})"
)
_WAIT_FOR_EVENTS_S = 600.0


def process_group(service: object) -> int | None:
    """The process group of a running component (each runs as a session leader, so its pid)."""
    pid = getattr(service, "pid", None)
    return pid if isinstance(pid, int) else None


def _signal(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)


class Pause:
    """SIGSTOP of the component's whole process group for a few seconds, then SIGCONT; then it
    must be healthy again without a restart (one that exits is restarted and fails the check)."""

    def __init__(self, component: Component, clock: Clock, config: DrillConfig) -> None:
        self._component = component
        self._clock = clock
        self._config = config
        self._rng = random.Random(f"{config.seed}/pause/{component.name}")

    async def due(self) -> None:
        return None

    async def __call__(self, fault: Fault) -> None:
        group = process_group(self._component.service)
        if group is None:
            fault.failures.append(f"{self._component.name} was not running: nothing to pause")
            return
        seconds = self._rng.uniform(*self._config.pause_s)
        fault.notes["paused_s"] = round(seconds, 2)
        _signal(group, signal.SIGSTOP)
        try:
            await asyncio.sleep(seconds)
        finally:
            _signal(group, signal.SIGCONT)
        ok = await start_until_ready(
            self._component, self._config.healthy_deadline_s, fault.start_failures
        )
        if ok:
            fault.ready_at = self._clock.now()
        if fault.start_failures:
            fault.failures.append(
                f"{self._component.name} did not come back on its own after a pause: "
                f"{fault.start_failures[0]}"
            )


class Takeover:
    """A second instance of the shard starts while the live one runs; the newcomer fences it.

    Every other takeover (seeded which first) pauses the live instance before the newcomer
    starts and resumes it once the newcomer serves: a zombie waking up. Either way clients keep
    calling the old instance until it exits, which must be with code 3 (fenced) within the
    deadline; then they follow the newcomer.
    """

    def __init__(
        self,
        component: Component,
        servers: CommandServers,
        credentials: LocalCredentials,
        clock: Clock,
        config: DrillConfig,
    ) -> None:
        self._component = component
        self._servers = servers
        self._credentials = credentials
        self._clock = clock
        self._config = config
        self._zombie = random.Random(f"{config.seed}/takeover").random() < 0.5

    async def due(self) -> None:
        return None

    async def __call__(self, fault: Fault) -> None:
        old = self._servers.live
        zombie, self._zombie = self._zombie, not self._zombie
        fault.notes["old_paused"] = zombie
        group = old.pid
        if zombie and group is not None:
            _signal(group, signal.SIGSTOP)
        newcomer = self._servers.newcomer()
        try:
            await asyncio.to_thread(newcomer.start)
        except StackError as error:
            fault.start_failures.append(str(error)[:400])
        finally:
            if zombie and group is not None:
                _signal(group, signal.SIGCONT)
        code = await asyncio.to_thread(_exit_code, old, self._config.fenced_exit_deadline_s)
        fault.notes["old_exit_code"] = code
        fault.notes["old_exited_after_s"] = round(self._clock.now() - fault.killed_at, 2)
        if code is None:
            fault.failures.append(
                f"the fenced command server still ran {self._config.fenced_exit_deadline_s:.0f}s "
                f"after a newcomer took its shard over (log: {old.log_file})"
            )
            await asyncio.to_thread(old.kill)
        elif code != EXIT_FENCED:
            fault.failures.append(
                f"the fenced command server exited with code {code}, not {EXIT_FENCED} "
                f"(log: {old.log_file})"
            )
        if not newcomer.is_running():
            # The takeover failed: the old instance is gone, so the shard gets a plain restart.
            newcomer = old
            await kill_and_restart(self._component, fault, self._clock, self._config)
        self._servers.follow(newcomer)
        _adopt(self._component, newcomer, self._credentials)
        if await start_until_ready(
            self._component, self._config.healthy_deadline_s, fault.start_failures
        ):
            fault.ready_at = self._clock.now()


def _exit_code(service: LedgerService, timeout: float) -> int | None:
    try:
        return service.wait_exit(timeout)
    except StackError:
        return None


def _adopt(component: Component, service: LedgerService, credentials: LocalCredentials) -> None:
    """From now on `component` is `service`: probed, watched and killed as the command server."""
    component.service = service
    component.log_file = service.log_file
    component.healthy = grpc_serving(service.address, credentials)
    component.exit_code = lambda: _exit_code(service, 0)


def acknowledged_events(journal: Journal) -> int:
    """Events the acknowledged commands put in the log (a lower bound of what it holds)."""
    return sum(EVENTS_PER_COMMAND[r.kind] for r in journal.acknowledged())


class SnapshotRestart:
    """SIGKILL of the command server once the log holds more than
    `snapshot_restart_min_events` events; its restart must restore from snapshots (its log says
    so) and replay fewer events than the log holds."""

    def __init__(
        self, component: Component, journal: Journal, clock: Clock, config: DrillConfig
    ) -> None:
        self._component = component
        self._journal = journal
        self._clock = clock
        self._config = config

    async def due(self) -> None:
        end = time.monotonic() + _WAIT_FOR_EVENTS_S
        while acknowledged_events(self._journal) <= self._config.snapshot_restart_min_events:
            if time.monotonic() > end:
                return
            await asyncio.sleep(0.5)

    async def __call__(self, fault: Fault) -> None:
        behind = acknowledged_events(self._journal)
        fault.notes["events_behind"] = behind
        await kill_and_restart(self._component, fault, self._clock, self._config)
        if behind <= self._config.snapshot_restart_min_events:
            fault.failures.append(
                f"the log held only {behind} acknowledged events at the snapshot restart, not "
                f"more than {self._config.snapshot_restart_min_events}"
            )
        run = await asyncio.to_thread(_last_run, self._component.log_file)
        rebuilt = _REBUILT.search(run)
        restored = _RESTORED.search(run)
        replayed = int(rebuilt.group(2)) if rebuilt else None
        fault.notes["replayed_events"] = replayed
        fault.notes["snapshot_offsets"] = restored.group(1) if restored else None
        if restored is None or replayed is None:
            fault.failures.append(
                "the command server restarted without restoring a snapshot "
                f"(log: {self._component.log_file})"
            )
        elif replayed >= behind:
            fault.failures.append(
                f"the restart replayed {replayed} events of {behind}: the snapshot saved nothing"
            )


def _last_run(log_file: Path) -> str:
    """What the latest start of a process wrote to its log."""
    try:
        return log_file.read_text(errors="replace").rsplit(_BANNER, 1)[-1]
    except OSError:
        return ""
