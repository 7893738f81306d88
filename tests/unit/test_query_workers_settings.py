"""LEDGER_QUERY_WORKERS: how many query-server processes share the port."""

from __future__ import annotations

from pathlib import Path

import pytest

from ledger.environment import SettingsError
from query_server.settings import Settings, available_cpus


def test_workers_come_from_the_environment() -> None:
    assert Settings.from_env({"LEDGER_QUERY_WORKERS": "3"}).workers == 3
    assert Settings.from_env({"LEDGER_QUERY_WORKERS": "1"}).workers == 1
    assert Settings.from_env({}).workers == 1
    assert Settings.from_env({"LEDGER_QUERY_WORKERS": "auto"}).workers == available_cpus() >= 1
    for bad in ("0", "-1", "two"):
        with pytest.raises(SettingsError, match="LEDGER_QUERY_WORKERS"):
            Settings.from_env({"LEDGER_QUERY_WORKERS": bad})


def test_several_workers_need_a_fixed_port() -> None:
    with pytest.raises(SettingsError, match="fixed port"):
        Settings.from_env({"LEDGER_QUERY_ADDR": "127.0.0.1:0", "LEDGER_QUERY_WORKERS": "2"})
    one = Settings.from_env({"LEDGER_QUERY_ADDR": "127.0.0.1:0", "LEDGER_QUERY_WORKERS": "1"})
    assert one.listen == "127.0.0.1:0"


def test_a_cgroup_cpu_quota_bounds_the_default(tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    unbounded = available_cpus(tmp_path / "missing")
    cpu_max.write_text("max 100000\n")
    assert available_cpus(cpu_max) == unbounded
    cpu_max.write_text("150000 100000\n")  # 1.5 CPUs: the second core is used part-time
    assert available_cpus(cpu_max) == min(unbounded, 2)
    cpu_max.write_text("10000 100000\n")
    assert available_cpus(cpu_max) == 1
    cpu_max.write_text("garbage\n")
    assert available_cpus(cpu_max) == unbounded
