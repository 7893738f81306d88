"""How the benchmarks hand ghz a server's CA and a bearer token, and pair TLS runs with
plaintext ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bench.ghz import GhzTls
from bench.noop_comparison import paired_median


def test_the_token_reaches_ghz_in_a_private_file_not_on_its_command_line(tmp_path: Path) -> None:
    tls = GhzTls.bearer(tmp_path / "ca.pem", "the-token", tmp_path / "metadata.json")
    assert json.loads(tls.metadata_file.read_text()) == {"authorization": "Bearer the-token"}
    assert tls.metadata_file.stat().st_mode & 0o077 == 0
    arguments = tls.arguments()
    assert arguments == [f"--cacert={tmp_path / 'ca.pem'}", f"--metadata-file={tls.metadata_file}"]
    assert not any("the-token" in argument for argument in arguments)


def test_tls_runs_are_paired_with_the_plaintext_run_after_each() -> None:
    runs = {
        "tls": [{"rate": 90.0}, {"rate": 50.0}, {"rate": 80.0}],
        "plaintext": [{"rate": 100.0}, {"rate": 100.0}, {"rate": 80.0}],
    }
    ratio = paired_median(runs, "vs", lambda a, b: a["rate"] / b["rate"], "tls", "plaintext")
    assert ratio == pytest.approx(0.9)
    assert [run["vs"] for run in runs["tls"]] == pytest.approx([0.9, 0.5, 1.0])
    assert all("vs" not in run for run in runs["plaintext"])
