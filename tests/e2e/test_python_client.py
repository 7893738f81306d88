"""The Python client (clients/python), installed with pip into a fresh virtual environment, run
against real servers started as `make run` starts them (TLS, tokens).

The environment is made once per module from a copy of clients/python (pip builds in the source
tree; the copy keeps the checkout clean). In it run the README's example, the example script and
the client's own tests (tests/test_client_*.py: unit tests, and tests against these servers,
among them a command whose answer is lost and which must be applied once).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import uuid
import venv
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.client_programs import json_report, movements_of
from tests.e2e.running_ledger import RunningLedger

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]
CLIENT_DIR = REPO / "clients" / "python"
LEDGER_SECURE = True
INSTALL_TIMEOUT_S = 600.0
RUN_TIMEOUT_S = 300.0
# What the servers need and a client must not: Kafka, Avro, PostgreSQL (and the servers' package).
SERVER_ONLY = {"confluent-kafka", "fastavro", "asyncpg", "ledger"}


@pytest.fixture(scope="module")
def client_env(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    """(the environment's python, the copy of clients/python it was installed from)."""
    root = tmp_path_factory.mktemp("python-client")
    source = root / "python"
    shutil.copytree(
        CLIENT_DIR, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__")
    )
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    subprocess.run(
        [str(python), "-m", "pip", "install", "-q", str(source), "pytest"],
        check=True,
        capture_output=True,
        timeout=INSTALL_TIMEOUT_S,
    )
    return python, source


def _installed(python: Path) -> set[str]:
    listed = subprocess.run(
        [str(python), "-m", "pip", "list", "--format=json"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    return {re.sub(r"[-_.]+", "-", item["name"]).lower() for item in json.loads(listed)}


def test_installs_grpc_and_protobuf_and_no_server_library(client_env: tuple[Path, Path]) -> None:
    installed = _installed(client_env[0])
    assert {"ledger-client", "grpcio", "protobuf"} <= installed
    assert not installed & SERVER_ONLY


def _settings(ledger: RunningLedger) -> dict[str, str]:
    assert ledger.credentials is not None
    return {
        "LEDGER_TEST_COMMAND_ADDRESS": ledger.command_server.address,
        "LEDGER_TEST_QUERY_ADDRESS": ledger.query_server.address,
        "LEDGER_TEST_CA_FILE": str(ledger.credentials.ca),
        "LEDGER_TEST_TOKEN_FILE": str(ledger.credentials.directory / "writer.token"),
    }


def _run_example(python: Path, source: Path, settings: dict[str, str]) -> dict[str, Any]:
    return json_report(
        [
            str(python),
            str(source / "examples" / "quickstart.py"),
            *("--command", settings["LEDGER_TEST_COMMAND_ADDRESS"]),
            *("--query", settings["LEDGER_TEST_QUERY_ADDRESS"]),
            *("--ca-file", settings["LEDGER_TEST_CA_FILE"]),
            *("--token-file", settings["LEDGER_TEST_TOKEN_FILE"]),
            *("--currency", "KWD", "--amount", "12.345"),
        ]
    )


async def test_the_example_opens_deposits_and_reads_its_own_write(
    client_env: tuple[Path, Path], ledger: RunningLedger
) -> None:
    report = _run_example(*client_env, _settings(ledger))
    assert (report["opened_version"], report["deposit_version"]) == (1, 2)
    assert (report["balance"], report["version"], report["status"]) == ("12.345", 2, "OPEN")

    # What the Python client wrote, read with the servers' own stubs.
    movements = await movements_of(ledger, report["account_id"], report["deposit_token"])
    assert movements == [(report["deposit_command_id"], "12.345", "KWD")]


def _readme_example() -> str:
    readme = (REPO / "README.md").read_text()
    found = re.search(r"<!-- python-client:begin -->\n```python\n(.*?)```\n", readme, re.DOTALL)
    assert found, "README.md has no Python client example"
    return found.group(1)


def test_the_readmes_example_runs_as_written(
    client_env: tuple[Path, Path], ledger: RunningLedger
) -> None:
    """The README's block, with this ledger's addresses and credentials for `make run`'s and an
    account id of its own (ids are used once)."""
    assert ledger.credentials is not None
    program = (
        _readme_example()
        .replace("127.0.0.1:50051", ledger.command_server.address)
        .replace("127.0.0.1:50052", ledger.query_server.address)
        .replace(".data/credentials/", f"{ledger.credentials.directory}/")
        .replace('"bob"', repr(f"bob-{uuid.uuid4().hex[:8]}"))
    )
    result = subprocess.run(
        [str(client_env[0]), "-c", program],
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout == "12.50 2\n"


def test_the_clients_own_tests_pass_against_the_ledger(
    client_env: tuple[Path, Path], ledger: RunningLedger, tmp_path: Path
) -> None:
    python, source = client_env
    # A base temp of its own: a pytest without one makes the user's shared temp root private
    # again (0700), and the stack's PostgreSQL, running as another user, loses its data dir.
    basetemp = f"--basetemp={tmp_path / 'client-pytest'}"
    result = subprocess.run(
        [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", basetemp, "-rs", "tests"],
        cwd=source,
        env={**os.environ, **_settings(ledger)},
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    summary = result.stdout.strip().splitlines()[-1]
    assert "skipped" not in summary, result.stdout  # the tests against the ledger ran
    assert re.search(r"\d+ passed", summary), summary
