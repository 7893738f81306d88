"""CPU time of processes this benchmark started, from /proc (Linux)."""

from __future__ import annotations

import os
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User + system CPU seconds `pid` (all its threads) has used so far."""
    return _stat_cpu_seconds(Path(f"/proc/{pid}/stat"))


def thread_cpu_seconds(pid: int) -> list[tuple[int, str, float]]:
    """(thread id, name, CPU seconds) of each thread of `pid` still alive; none if it ended."""
    try:
        tasks = list(Path(f"/proc/{pid}/task").iterdir())
    except OSError:
        return []
    threads = []
    for task in tasks:
        try:
            name = (task / "comm").read_text().strip()
            threads.append((int(task.name), name, _stat_cpu_seconds(task / "stat")))
        except OSError:
            continue  # ended meanwhile
    return threads


def _stat_cpu_seconds(stat_file: Path) -> float:
    stat = stat_file.read_text()
    # The command name (field 2) may contain spaces: split after its closing parenthesis.
    fields = stat[stat.rindex(")") + 2 :].split()
    utime, stime = int(fields[11]), int(fields[12])
    return (utime + stime) / _TICKS


def _processes() -> dict[int, tuple[int, list[bytes]]]:
    """Every process we can see: pid -> (parent pid, command line)."""
    found: dict[int, tuple[int, list[bytes]]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        found[int(entry.name)] = (int(stat[stat.rindex(")") + 2 :].split()[1]), cmdline)
    return found


def descendant_pid(argument: str) -> int:
    """The pid of a descendant of ours with `argument` on its command line (e.g. kafka.Kafka)."""
    processes = _processes()
    mine = _descendants(os.getpid(), processes)
    for pid in sorted(mine):
        if argument.encode() in processes[pid][1]:
            return pid
    raise LookupError(f"no process of ours runs with {argument}")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds of `pid` and all its live descendants (a server and the processes it spawned)."""
    total = 0.0
    for member in {pid, *_descendants(pid, _processes())}:
        try:
            total += cpu_seconds(member)
        except OSError:
            continue  # exited meanwhile
    return total


def _descendants(root: int, processes: dict[int, tuple[int, list[bytes]]]) -> set[int]:
    children: dict[int, list[int]] = {}
    for pid, (ppid, _) in processes.items():
        children.setdefault(ppid, []).append(pid)
    found: set[int] = set()
    stack = [root]
    while stack:
        for child in children.get(stack.pop(), []):
            if child not in found:
                found.add(child)
                stack.append(child)
    return found


def machine() -> dict[str, object]:
    """What the numbers were measured on."""
    model = "unknown"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            model = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
            break
    return {
        "nproc": os.cpu_count() or 0,
        "cpu_model": model,
        "memory_gib": round(mem_kib / 1024 / 1024, 1),
        "kernel": os.uname().release,
    }
