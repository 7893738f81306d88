"""The Go client (clients/go), generated from proto/ledger/v1, built, and run against real servers.

The stubs are generated here, into a copy of the module, as a developer would generate them
(clients/go/generate.py); nothing generated is committed, so nothing can be stale. Go's caches
live under .cache/go (devstack/go_tools.py), so only the first run compiles gRPC.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from devstack.go_tools import GRPCURL, PROTOC_GEN_GO, go_environment, go_executable
from ledger.consistency import ConsistencyToken
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.e2e.running_ledger import RunningLedger

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "go"
BUILD_TIMEOUT_S = 1200.0  # a cold build compiles gRPC-Go on two cores
RUN_TIMEOUT_S = 60.0
# The servers run as under `make run`: TLS with the local CA, a token on every call.
LEDGER_SECURE = True


def _required(module: str) -> str:
    """The version of `module` that clients/go/go.mod requires."""
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", _go_mod(), re.MULTILINE)
    assert found, f"go.mod does not require {module}"
    return found.group(1)


def _go_mod() -> str:
    return (CLIENT_DIR / "go.mod").read_text()


def test_the_stubs_are_generated_by_the_protobuf_runtimes_own_version() -> None:
    """protoc-gen-go's output must not be newer than the google.golang.org/protobuf it runs on."""
    assert _required("google.golang.org/protobuf") == PROTOC_GEN_GO.version


def test_grpc_is_the_version_grpcurl_is_built_with() -> None:
    # Not a correctness rule, a CI-time one: the same gRPC-Go compiles once for both.
    assert GRPCURL.version == "v1.9.4", "grpcurl moved: align go.mod's gRPC with its go.mod"
    assert _required("google.golang.org/grpc") == "v1.83.2"


def _go(module: Path, *args: str) -> str:
    result = subprocess.run(
        [go_executable(), *args],
        cwd=module,
        env=go_environment(),
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT_S,
    )
    assert result.returncode == 0, f"go {' '.join(args)} failed: {result.stderr.strip()}"
    return result.stdout


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The client, built from a copy of clients/go with freshly generated stubs."""
    module = tmp_path_factory.mktemp("go-client")
    sources = ["go.mod", "go.sum", *(p.name for p in CLIENT_DIR.glob("*.go"))]
    for name in sources:
        shutil.copy(CLIENT_DIR / name, module / name)
    subprocess.run(
        [sys.executable, str(CLIENT_DIR / "generate.py"), "--module-dir", str(module)],
        check=True,
        capture_output=True,
        timeout=BUILD_TIMEOUT_S,
    )
    binary = module / "ledger-client"
    _go(module, "build", "-o", str(binary), ".")
    _go(module, "vet", "./...")
    # -mod=mod would quietly add what the committed files lack: they must have needed nothing.
    for name in ("go.mod", "go.sum"):
        assert (module / name).read_text() == (CLIENT_DIR / name).read_text(), (
            f"clients/go/{name} is not tidy: run `go mod tidy` in clients/go and commit it"
        )
    unformatted = subprocess.run(
        [str(Path(go_executable()).with_name("gofmt")), "-l", *sources[2:]],
        cwd=CLIENT_DIR,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    assert not unformatted, f"run gofmt -w on {unformatted.split()}"
    return binary


def _run(client: Path, ledger: RunningLedger, *args: str) -> subprocess.CompletedProcess[str]:
    assert ledger.credentials is not None
    return subprocess.run(
        [
            str(client),
            "-command",
            ledger.command_server.address,
            "-query",
            ledger.query_server.address,
            "-cacert",
            str(ledger.credentials.ca),
            "-token-file",
            str(ledger.credentials.directory / "writer.token"),
            *args,
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )


@pytest.mark.integration
async def test_opens_deposits_and_reads_its_own_write(client: Path, ledger: RunningLedger) -> None:
    result = _run(client, ledger, "-currency", "JPY", "-amount", "1500")
    assert result.returncode == 0, result.stderr
    report: dict[str, Any] = json.loads(result.stdout)
    assert report["account_id"].startswith("go-")
    assert (report["opened_version"], report["deposit_version"]) == (1, 2)
    assert (report["read_balance"], report["read_version"]) == ("1500", 2)
    assert report["read_status"] == "ACCOUNT_STATUS_OPEN"
    covered = ConsistencyToken.decode(report["read_fresh_as_token"]).positions
    assert ConsistencyToken.decode(report["deposit_token"]).covered_by(covered)

    # What the Go client wrote is what any other client reads.
    assert ledger.credentials is not None
    async with ledger.query_server.channel(ledger.credentials.token("reader")) as channel:
        answer = await pb_grpc.QueryServiceStub(channel).GetAccount(
            pb.GetAccountRequest(
                account_id=report["account_id"], consistency_token=report["deposit_token"]
            ),
            timeout=10,
        )
    assert (answer.account.currency, answer.account.balance) == ("JPY", "1500")
    assert answer.account.owner == "Go client"


@pytest.mark.integration
def test_reports_a_rejected_command_and_fails(client: Path, ledger: RunningLedger) -> None:
    # Cents on a yen account: the command server refuses it, the client says so and exits 1.
    result = _run(client, ledger, "-currency", "JPY", "-amount", "1.50")
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Deposit:" in result.stderr
    assert "InvalidArgument" in result.stderr
