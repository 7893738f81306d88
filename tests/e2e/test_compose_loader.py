"""compose.yaml as Docker would load it: through compose-go, the loader `docker compose` is
built on (no Docker engine needed). The checks of compose.yaml against the code are in
tests/unit/test_compose.py."""

from __future__ import annotations

import os
import subprocess
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from devstack.go_tools import COMPOSE_SPEC, ensure_go_tool

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.integration  # needs Go and the Go module proxy (once), not the stack
def test_the_compose_specifications_own_loader_accepts_it() -> None:
    """compose-go, which `docker compose config` is built on: schema, interpolation, merges."""
    validator = ensure_go_tool(COMPOSE_SPEC)
    result = subprocess.run(
        [str(validator), "-format", "json", "compose.yaml"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
        env=_without_compose_variables(),
    )
    assert result.returncode == 0, result.stderr
    model = yaml.safe_load(result.stdout)  # JSON is YAML
    # The anchors merged as Docker would merge them.
    assert model["services"]["query-server"]["environment"]["LEDGER_LOG_FORMAT"] == "json"


def _without_compose_variables() -> Mapping[str, str]:
    # COMPOSE_FILE, COMPOSE_PROJECT_NAME... in a developer's shell would change what is loaded.
    return {k: v for k, v in os.environ.items() if not k.startswith("COMPOSE_")}
