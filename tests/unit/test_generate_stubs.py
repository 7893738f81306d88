"""The stub generator must be deterministic: CI compares its output with the committed stubs."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "generate_stubs.py"


def generate(out: Path) -> Path:
    subprocess.run([sys.executable, str(SCRIPT), "--out", str(out)], check=True)
    return out / "ledger" / "v1"


def test_generating_twice_gives_identical_stubs(tmp_path: Path) -> None:
    first = generate(tmp_path / "first")
    second = generate(tmp_path / "second")
    names = sorted(path.name for path in first.iterdir())
    assert names == sorted(path.name for path in second.iterdir())
    assert {"commands_pb2.pyi", "commands_pb2_grpc.pyi", "queries_pb2_grpc.py"} <= set(names)
    _, mismatch, errors = filecmp.cmpfiles(first, second, names, shallow=False)
    assert (mismatch, errors) == ([], [])


def test_regenerating_in_place_removes_stale_stubs(tmp_path: Path) -> None:
    stale = tmp_path / "ledger" / "v1" / "removed_pb2.py"
    stale.parent.mkdir(parents=True)
    stale.write_text("# from a .proto file that no longer exists\n")
    generate(tmp_path)
    assert not stale.exists()
