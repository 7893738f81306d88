"""Injecting faults at random moments, and supervising components like systemd or Kubernetes would.

The injector injects one fault at a time: by default a SIGKILL of a component's whole process
group, a moment down, a start again; other kinds (a takeover, a pause, a restart from a
snapshot: `fault_kinds`) are actions of their own. It times how long until the component is
ready, and until everything is healthy again; only then, after a random pause, does it pick the
next one. The plan injects every kind of fault `min_kills` times in a seeded random order.

The supervisor watches every component the injector is not handling: one that exits on its own
(a crash: a fatal error, a failed start) is restarted at once, and the crash is recorded with its
exit code and the last lines of its log, separately from the deliberate faults.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
import logging
import random
import statistics
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from devstack.errors import StackError
from devstack.process import log_tail
from fault_drill.config import (
    KAFKA,
    KAFKA_PAUSE,
    SNAPSHOT_RESTART,
    TAKEOVER,
    TARGET,
    DrillConfig,
)
from ledger.backoff import Backoff

log = logging.getLogger(__name__)

_POLL_S = 0.2
_START_BACKOFF_FIRST_S = 0.5
_START_BACKOFF_CAP_S = 5.0
# Rough restart costs (s), to spread the planned kills over the load.
_COST = {KAFKA: 15.0, KAFKA_PAUSE: 10.0, TAKEOVER: 8.0}
_DEFAULT_COST = 6.0


class Restartable(Protocol):
    def kill(self) -> None: ...

    def start(self) -> None: ...

    def is_running(self) -> bool: ...


@dataclass(slots=True)
class Component:
    name: str
    service: Restartable
    log_file: Path
    healthy: Callable[[], bool]
    """Blocking probe: is the component doing its job (not only running)?"""
    exit_code: Callable[[], int | None] = lambda: None
    held: bool = False
    """Being killed or restarted by the injector or the supervisor: not watched meanwhile."""


@dataclass(slots=True)
class Fault:
    component: str
    killed_at: float
    """Seconds since the drill started."""
    restart_delay_s: float
    ready_at: float | None = None
    healthy_at: float | None = None
    start_failures: list[str] = field(default_factory=list)
    failures: list[str] = field(default_factory=list)
    """Promises this fault found broken (the drill fails): a fenced instance that did not stop,
    a restart that did not use a snapshot..."""
    notes: dict[str, Any] = field(default_factory=dict)
    """What the fault's kind records about it (pause length, exit code, snapshot used...)."""

    @property
    def ready_s(self) -> float | None:
        return None if self.ready_at is None else self.ready_at - self.killed_at

    @property
    def healthy_s(self) -> float | None:
        return None if self.healthy_at is None else self.healthy_at - self.killed_at


@dataclass(slots=True)
class Crash:
    """A component that exited (or vanished) without being killed: a finding."""

    component: str
    detected_at: float
    exit_code: int | None
    log_tail: str
    during_fault: str | None
    """The component the injector had killed at that moment, if any."""
    log_file: Path
    restarted_at: float | None = None
    start_failures: list[str] = field(default_factory=list)


class Clock(Protocol):
    def now(self) -> float: ...


class FaultAction(Protocol):
    """A kind of fault other than a kill and restart of its component."""

    async def due(self) -> None:
        """Return once the fault may be injected (the load goes on meanwhile)."""

    async def __call__(self, fault: Fault) -> None:
        """Inject it (its component is held meanwhile); set `fault.ready_at` once the component
        is ready again, and add to `fault.failures` any promise found broken."""


def _short(error: BaseException, limit: int = 400) -> str:
    text = str(error)
    return text if len(text) <= limit else text[:limit] + "..."


async def start_until_ready(component: Component, deadline_s: float, failures: list[str]) -> bool:
    """Start `component` (blocking start in a thread) until it is healthy; retry failed starts
    with backoff until `deadline_s` has passed. Failed starts are appended to `failures`."""
    end = time.monotonic() + deadline_s
    # Like ledger/supervision.py: never sooner than the first wait, so a failing start cannot spin.
    backoff = Backoff(_START_BACKOFF_FIRST_S, _START_BACKOFF_CAP_S, floor=_START_BACKOFF_FIRST_S)
    while True:
        try:
            if not component.service.is_running():
                await asyncio.to_thread(component.service.start)
            while not await asyncio.to_thread(component.healthy):
                if not component.service.is_running():
                    raise StackError(f"{component.name} exited after it was ready")
                if time.monotonic() > end:
                    raise StackError(f"{component.name} did not become healthy")
                await asyncio.sleep(_POLL_S)
            return True
        except StackError as error:
            failures.append(_short(error))
            log.warning("starting %s failed: %s", component.name, _short(error))
            if time.monotonic() > end:
                return False
            # A half-started component must not hold its port for the next try.
            await asyncio.to_thread(component.service.kill)
            await asyncio.sleep(backoff.next())


class Supervisor:
    def __init__(
        self,
        components: Mapping[str, Component],
        clock: Clock,
        *,
        deadline_s: float,
        say: Callable[[str], None],
    ) -> None:
        self._components = components
        self._clock = clock
        self._deadline_s = deadline_s
        self._say = say
        self.crashes: list[Crash] = []
        self.current_fault: str | None = None
        self._stopping = asyncio.Event()
        self._restarts: set[asyncio.Task[None]] = set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            for component in self._components.values():
                if component.held or component.service.is_running():
                    continue
                self._crashed(component)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), _POLL_S)
        if self._restarts:
            await asyncio.gather(*self._restarts, return_exceptions=True)

    def stop(self) -> None:
        self._stopping.set()

    def _crashed(self, component: Component) -> None:
        component.held = True
        crash = Crash(
            component.name,
            self._clock.now(),
            component.exit_code(),
            log_tail(component.log_file, lines=8),
            self.current_fault,
            component.log_file,
        )
        self.crashes.append(crash)
        self._say(
            f"CRASH: {component.name} exited on its own (exit code {crash.exit_code}); "
            f"restarting it. {crash.log_tail.rsplit(' | ', 1)[-1]} (log: {crash.log_file})"
        )
        task = asyncio.create_task(self._restart(component, crash))
        self._restarts.add(task)
        task.add_done_callback(self._restarts.discard)

    async def _restart(self, component: Component, crash: Crash) -> None:
        try:
            if await start_until_ready(component, self._deadline_s, crash.start_failures):
                crash.restarted_at = self._clock.now()
                self._say(
                    f"supervisor: {component.name} is back "
                    f"{crash.restarted_at - crash.detected_at:.1f}s after its crash"
                )
            else:
                self._say(f"supervisor: {component.name} could not be restarted")
        finally:
            component.held = False


class FaultInjector:
    def __init__(
        self,
        components: Mapping[str, Component],
        supervisor: Supervisor,
        clock: Clock,
        config: DrillConfig,
        *,
        healthy: Callable[[], Awaitable[bool]],
        say: Callable[[str], None],
    ) -> None:
        self._components = components
        self._supervisor = supervisor
        self._clock = clock
        self._config = config
        self._healthy = healthy
        self._say = say
        self.actions: dict[str, FaultAction] = {}
        """Per kind of fault that is not a plain kill and restart: what injects it."""
        self._rng = random.Random(f"{config.seed}/faults")
        self.faults: list[Fault] = []
        self.unrecovered: list[str] = []

    def plan(self) -> list[str]:
        """Every kind of fault `min_kills` times, shuffled, never the same one twice in a row;
        the snapshot restarts last, so that the log has grown as much as it will."""
        kinds = [k for k in self._config.fault_kinds if k != SNAPSHOT_RESTART]
        plan = [name for name in kinds for _ in range(self._config.min_kills)]
        for _ in range(100):
            self._rng.shuffle(plan)
            if all(a != b for a, b in itertools.pairwise(plan)):
                break
        if SNAPSHOT_RESTART not in self._config.fault_kinds:
            return plan
        # The snapshot restarts take turns with the end of the plan rather than come in a row.
        others = len(plan) - (self._config.min_kills - 1)
        tail = [SNAPSHOT_RESTART]
        for kind in plan[others:]:
            tail += [kind, SNAPSHOT_RESTART]
        return [*plan[:others], *tail]

    async def run(self, load_until: float) -> None:
        """Kill and restart components until the plan is done and, with extra kills, until
        `load_until` (drill seconds) is near."""
        plan = self.plan()
        self._say(f"fault plan: {', '.join(plan)}")
        previous: str | None = None
        while True:
            if plan:
                name = plan.pop(0)
            elif self._config.extra_kills:
                kinds = self._config.fault_kinds
                name = self._rng.choice([c for c in kinds if c != previous or len(kinds) == 1])
                if self._clock.now() + self._gap_max() + _cost(name) > load_until:
                    return
            else:
                return
            await asyncio.sleep(self._gap(plan, name, load_until))
            action = self.actions.get(name)
            if action is not None:
                await action.due()
            await self.inject(name)
            previous = name

    def _gap_max(self) -> float:
        return self._config.gap_s[1]

    def _gap(self, plan: Sequence[str], name: str, load_until: float) -> float:
        """A random pause that spreads the remaining planned kills over the remaining load."""
        low, high = self._config.gap_s
        slack = load_until - self._clock.now() - sum(_cost(n) for n in (name, *plan))
        share = slack / (len(plan) + 1)
        return self._rng.uniform(low, max(low, min(high, share)))

    async def inject(self, name: str) -> Fault:
        component = self._components[TARGET[name]]
        component.held = True
        self._supervisor.current_fault = TARGET[name]
        try:
            fault = Fault(name, self._clock.now(), self._rng.uniform(*self._config.restart_delay_s))
            self.faults.append(fault)
            action = self.actions.get(name)
            if action is None:
                self._say(f"KILL {name}")
                await kill_and_restart(component, fault, self._clock, self._config)
            else:
                self._say(f"FAULT {name}")
                await action(fault)
            if fault.ready_at is None:
                self.unrecovered.append(f"{name} could not be restarted: {fault.start_failures}")
            for failure in fault.failures:
                self._say(f"FAILED CHECK after {name}: {failure}")
        finally:
            component.held = False
        end = time.monotonic() + self._config.healthy_deadline_s
        while not await self._healthy():
            if time.monotonic() > end:
                self.unrecovered.append(
                    f"not everything was healthy {self._config.healthy_deadline_s:.0f}s after "
                    f"killing {name}"
                )
                self._say(
                    f"NOT HEALTHY {self._config.healthy_deadline_s:.0f}s after killing {name}"
                )
                break
            await asyncio.sleep(_POLL_S)
        else:
            fault.healthy_at = self._clock.now()
        self._supervisor.current_fault = None
        self._say(
            f"{name} ready after {_seconds(fault.ready_s)}, everything healthy after "
            f"{_seconds(fault.healthy_s)}"
            + (f" ({len(fault.start_failures)} failed starts)" if fault.start_failures else "")
        )
        return fault


async def kill_and_restart(
    component: Component, fault: Fault, clock: Clock, config: DrillConfig
) -> None:
    """SIGKILL `component`, leave it down for the fault's restart delay, start it until ready."""
    await asyncio.to_thread(component.service.kill)
    await asyncio.sleep(fault.restart_delay_s)
    if await start_until_ready(component, config.healthy_deadline_s, fault.start_failures):
        fault.ready_at = clock.now()


def _cost(name: str) -> float:
    return _COST.get(name, _DEFAULT_COST)


def _seconds(value: float | None) -> str:
    return "never" if value is None else f"{value:.1f}s"


def median_max(values: Sequence[float]) -> tuple[float | None, float | None]:
    if not values:
        return None, None
    return statistics.median(values), max(values)


def http_ok(url: str, timeout: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout) as reply:
            return bool(reply.status == 200)
    except OSError:
        return False


def projector_assigned(address: str, partitions: int, timeout: float = 2.0) -> bool:
    """Whether the projector at `address` is healthy and holds all `partitions`."""
    if not http_ok(f"http://{address}/healthz", timeout):
        return False
    try:
        with urllib.request.urlopen(f"http://{address}/status", timeout=timeout) as reply:
            status = json.loads(reply.read())
    except (OSError, ValueError):
        return False
    return len(status.get("partitions", {})) >= partitions
