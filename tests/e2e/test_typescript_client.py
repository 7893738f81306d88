"""The TypeScript client (clients/typescript): built with tsc, its tests run by node's test runner.

The unit tests (retry policy, command ids, sessions) need no server; the integration tests run
against the real ledger, served with TLS and tokens as under `make run`, whose addresses, CA and
token files they get in LEDGER_TS_* variables. `npm ci` runs once per change of package-lock.json
(devstack/node_tools.py), not once per run.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

import pytest

from devstack.node_tools import TYPESCRIPT_CLIENT, ensure_node_modules, executable, npm_environment
from tests.e2e.client_programs import json_report
from tests.e2e.running_ledger import RunningLedger

BUILD_TIMEOUT_S = 300.0
RUN_TIMEOUT_S = 180.0
# The servers run as under `make run`: TLS with the local CA, a token on every call.
LEDGER_SECURE = True

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client and its tests compiled by the pinned tsc into a folder of the test's own."""
    node_modules = ensure_node_modules()
    out_dir = tmp_path_factory.mktemp("typescript-client")
    result = subprocess.run(
        [str(node_modules / ".bin" / "tsc"), "-p", "tsconfig.json", "--outDir", str(out_dir)],
        cwd=TYPESCRIPT_CLIENT,
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT_S,
    )
    assert result.returncode == 0, f"tsc failed:\n{result.stdout}{result.stderr}"
    # Node looks for packages in node_modules folders above the compiled files.
    (out_dir / "node_modules").symlink_to(node_modules, target_is_directory=True)
    return out_dir


def _node_test(folder: Path, env: dict[str, str]) -> str:
    result = subprocess.run(
        [executable("node"), "--test", "--test-reporter=tap", str(folder)],
        cwd=TYPESCRIPT_CLIENT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 0, f"node --test failed:\n{result.stdout}\n{result.stderr}"
    assert "# SKIP" not in result.stdout, result.stdout
    passed = re.search(r"^# pass (\d+)$", result.stdout, re.MULTILINE)
    assert passed, result.stdout
    assert int(passed.group(1)) > 0, result.stdout
    return result.stdout


def _without_ledger_variables() -> dict[str, str]:
    return {k: v for k, v in npm_environment().items() if not k.startswith("LEDGER_TS_")}


def test_the_client_is_formatted() -> None:
    # tsc --strict checks the types when `built` compiles; prettier keeps one layout.
    result = subprocess.run(
        [str(ensure_node_modules() / ".bin" / "prettier"), "--check", "src", "test", "examples"],
        cwd=TYPESCRIPT_CLIENT,
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT_S,
    )
    assert result.returncode == 0, f"run `npm run format` in clients/typescript:\n{result.stdout}"


def test_unit_tests(built: Path) -> None:
    output = _node_test(built / "test" / "unit", _without_ledger_variables())
    assert re.search(r"^ok \d+ - retries UNAVAILABLE and DEADLINE_EXCEEDED", output, re.MULTILINE)


def test_against_the_real_ledger(built: Path, ledger: RunningLedger) -> None:
    assert ledger.credentials is not None
    credentials = ledger.credentials.directory
    env = {
        **_without_ledger_variables(),
        "LEDGER_TS_COMMAND_ADDRESS": ledger.command_server.address,
        "LEDGER_TS_QUERY_ADDRESS": ledger.query_server.address,
        "LEDGER_TS_CA_FILE": str(ledger.credentials.ca),
        "LEDGER_TS_WRITER_TOKEN_FILE": str(credentials / "writer.token"),
        "LEDGER_TS_READER_TOKEN_FILE": str(credentials / "reader.token"),
    }
    output = _node_test(built / "test" / "integration", env)
    for name in (
        "a lost answer is retried with the same id and the deposit is applied once",
        "a batch gets one result per command, and the failing one its own code",
        "an atomic batch with a failing command applies nothing",
        "a batch whose answer is lost is retried with the same ids and applied once",
    ):
        assert re.search(rf"^\s*ok \d+ - {re.escape(name)}$", output, re.MULTILINE), output


def test_the_readme_example_is_the_example_file() -> None:
    readme = (TYPESCRIPT_CLIENT.parents[1] / "README.md").read_text()
    block = re.search(
        r"<!-- typescript-example:begin -->\n```ts\n(.*?)```\n<!-- typescript-example:end -->",
        readme,
        re.DOTALL,
    )
    assert block, "README.md lost its TypeScript example"
    example = (TYPESCRIPT_CLIENT / "examples" / "readme.ts").read_text()
    # The README imports the package by name; the example, inside the package, by path.
    assert block.group(1) == example.replace('from "../src";', 'from "@ledger/client";')


def test_the_readme_example_reads_its_own_write(built: Path, ledger: RunningLedger) -> None:
    assert ledger.credentials is not None
    env = {
        **_without_ledger_variables(),
        "LEDGER_CREDENTIALS": str(ledger.credentials.directory),
        "LEDGER_COMMAND_ADDRESS": ledger.command_server.address,
        "LEDGER_QUERY_ADDRESS": ledger.query_server.address,
    }
    report = json_report([executable("node"), str(built / "examples" / "readme.js")], env)
    assert (report["balance"], report["version"]) == ("12.50", 2)
