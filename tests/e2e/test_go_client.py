"""The Go client (clients/go): vetted, unit-tested, and its tests and examples run on real servers.

The library (`ledger/clients/go/ledger`) and its committed stubs (`ledgerv1`, which `make
check-generated` keeps current) are built in place with `-mod=readonly`, so a go.mod or go.sum
that lacks anything fails here instead of being quietly completed. The integration tests
(`clients/go/ledger/integration_test.go`) run against the real ledger, served with TLS and tokens
as under `make run`, whose addresses, CA and token files they get in LEDGER_GO_* variables. Go's
caches live under .cache/go (devstack/go_tools.py), so only the first run compiles gRPC.
"""

from __future__ import annotations

import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from devstack.go_tools import GRPCURL, PROTOC_GEN_GO, go_environment, go_executable
from ledger.consistency import ConsistencyToken
from tests.e2e.client_programs import json_report, movements_of
from tests.e2e.running_ledger import RunningLedger

CLIENT_DIR = Path(__file__).resolve().parents[2] / "clients" / "go"
README = CLIENT_DIR.parents[1] / "README.md"
BUILD_TIMEOUT_S = 1200.0  # a cold build compiles gRPC-Go on two cores
RUN_TIMEOUT_S = 180.0
# The servers run as under `make run`: TLS with the local CA, a token on every call.
LEDGER_SECURE = True


def _required(module: str) -> str:
    """The version of `module` that clients/go/go.mod requires."""
    go_mod = (CLIENT_DIR / "go.mod").read_text()
    found = re.search(rf"^\s*(?:require\s+)?{re.escape(module)} (v\S+)", go_mod, re.MULTILINE)
    assert found, f"go.mod does not require {module}"
    return found.group(1)


def test_the_stubs_are_generated_by_the_protobuf_runtimes_own_version() -> None:
    """protoc-gen-go's output must not be newer than the google.golang.org/protobuf it runs on."""
    assert _required("google.golang.org/protobuf") == PROTOC_GEN_GO.version
    stub = (CLIENT_DIR / "ledgerv1" / "commands.pb.go").read_text()
    assert f"protoc-gen-go {PROTOC_GEN_GO.version}\n" in stub


def test_grpc_is_the_version_grpcurl_is_built_with() -> None:
    # Not a correctness rule, a CI-time one: the same gRPC-Go compiles once for both.
    assert GRPCURL.version == "v1.9.4", "grpcurl moved: align go.mod's gRPC with its go.mod"
    assert _required("google.golang.org/grpc") == "v1.83.2"


def _environment(**ledger: str) -> dict[str, str]:
    env = {k: v for k, v in go_environment().items() if not k.startswith("LEDGER_GO_")}
    # readonly: what go.mod and go.sum lack is an error, not something to add (-mod=mod would).
    env["GOFLAGS"] = env["GOFLAGS"].replace("-mod=mod", "-mod=readonly")
    return {**env, **ledger}


def _go(*args: str, env: dict[str, str] | None = None) -> str:
    result = subprocess.run(
        [go_executable(), *args],
        cwd=CLIENT_DIR,
        env=env or _environment(),
        capture_output=True,
        text=True,
        check=False,
        timeout=BUILD_TIMEOUT_S,
    )
    assert result.returncode == 0, f"go {' '.join(args)} failed:\n{result.stdout}{result.stderr}"
    return result.stdout


@pytest.fixture(scope="module")
def binaries(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The module vetted, and its two examples built into a folder of the test's own."""
    out_dir = tmp_path_factory.mktemp("go-client")
    _go("vet", "./...")
    _go("build", "-o", f"{out_dir}/", "./examples/...")
    return out_dir


def test_the_code_is_gofmt_formatted() -> None:
    gofmt = Path(go_executable()).with_name("gofmt")
    listed = subprocess.run(
        [str(gofmt), "-l", "."], cwd=CLIENT_DIR, capture_output=True, text=True, check=True
    )
    assert not listed.stdout, f"run gofmt -w on {listed.stdout.split()}"


def test_unit_tests() -> None:
    output = _go("test", "-count=1", "-v", "./...")
    for name in (
        "TestRetriesUnavailableAndDeadlineExceededWithTheSameCommandID",
        "TestAFullQueueIsRetriedWithTheSameIDAfterTheServersPushback",
        "TestTooOldToDeduplicateIsFinal",
        "TestASessionReadsEverythingItWroteAndRead",
        "TestABatchIsRetriedWholeWithTheSameIDs",
        "TestASessionCarriesABatchIntoItsNewReads",
    ):
        assert re.search(rf"^--- PASS: {name} ", output, re.MULTILINE), output
    # Without LEDGER_GO_* the integration tests have nothing to run against.
    assert re.search(r"^--- SKIP: TestIntegration", output, re.MULTILINE), output


@pytest.mark.integration
def test_against_the_real_ledger(binaries: Path, ledger: RunningLedger) -> None:
    assert ledger.credentials is not None
    credentials = ledger.credentials.directory
    env = _environment(
        LEDGER_GO_COMMAND_ADDRESS=ledger.command_server.address,
        LEDGER_GO_QUERY_ADDRESS=ledger.query_server.address,
        LEDGER_GO_CA_FILE=str(ledger.credentials.ca),
        LEDGER_GO_WRITER_TOKEN_FILE=str(credentials / "writer.token"),
        LEDGER_GO_READER_TOKEN_FILE=str(credentials / "reader.token"),
    )
    output = _go("test", "-count=1", "-v", "-run", "^TestIntegration", "./ledger/", env=env)
    assert "--- SKIP" not in output, output
    passed = re.findall(r"^--- PASS: (TestIntegration\w+)", output, re.MULTILINE)
    assert len(passed) >= 10, output
    for name in (
        "TestIntegrationALostAnswerIsRetriedWithTheSameIDAndTheDepositIsAppliedOnce",
        "TestIntegrationABatchGetsOneResultPerCommandAndTheFailingOneItsOwnCode",
        "TestIntegrationAnAtomicBatchWithAFailingCommandAppliesNothing",
        "TestIntegrationABatchWhoseAnswerIsLostIsRetriedAndAppliedOnce",
    ):
        assert name in passed, output


def _run(program: Path, *args: str, env: dict[str, str] | None = None) -> dict[str, Any]:
    """What `program` printed, a JSON object; it must have exited 0."""
    return json_report([str(program), *args], env)


def _demo_arguments(ledger: RunningLedger) -> list[str]:
    assert ledger.credentials is not None
    return [
        *("-command", ledger.command_server.address, "-query", ledger.query_server.address),
        *("-cacert", str(ledger.credentials.ca)),
        *("-token-file", str(ledger.credentials.directory / "writer.token")),
    ]


@pytest.mark.integration
async def test_the_demo_opens_deposits_and_reads_its_own_write(
    binaries: Path, ledger: RunningLedger
) -> None:
    arguments = _demo_arguments(ledger)
    report = _run(binaries / "ledger-client", *arguments, "-currency", "JPY", "-amount", "1500")
    assert report["account_id"].startswith("go-")
    assert (report["opened_version"], report["deposit_version"]) == (1, 2)
    assert (report["read_balance"], report["read_version"]) == ("1500", 2)
    assert report["read_status"] == "ACCOUNT_STATUS_OPEN"
    covered = ConsistencyToken.decode(report["read_fresh_as_token"]).positions
    assert ConsistencyToken.decode(report["deposit_token"]).covered_by(covered)

    # What the Go client wrote is what any other client reads.
    movements = await movements_of(ledger, report["account_id"], report["deposit_token"])
    assert movements[0] == (report["deposit_command_id"], "1500", "JPY")

    # The batch: an account opened and the deposit moved into it, atomically, each with its id.
    second = report["batch_account_id"]
    assert report["batch_codes"] == ["OK", "OK"]
    opened_id, transfer_id = report["batch_command_ids"]
    assert opened_id != transfer_id
    assert report["batch_read_balances"] == {report["account_id"]: "0", second: "1500"}
    moved_in = await movements_of(ledger, second, report["batch_token"])
    assert moved_in == [(transfer_id, "1500", "JPY")]


@pytest.mark.integration
def test_the_demo_reports_a_rejected_command_and_fails(
    binaries: Path, ledger: RunningLedger
) -> None:
    # Cents on a yen account: the command server refuses it, the client says so and exits 1.
    result = subprocess.run(
        [
            binaries / "ledger-client",
            *_demo_arguments(ledger),
            "-currency",
            "JPY",
            "-amount",
            "1.50",
        ],
        capture_output=True,
        text=True,
        check=False,
        timeout=RUN_TIMEOUT_S,
    )
    assert result.returncode == 1
    assert result.stdout == ""
    assert "Deposit: InvalidArgument:" in result.stderr


def test_the_readme_example_is_the_example_program() -> None:
    block = re.search(
        r"<!-- go-example:begin -->\n```go\n(.*?)```\n<!-- go-example:end -->",
        README.read_text(),
        re.DOTALL,
    )
    assert block, "README.md lost its Go example"
    assert block.group(1) == (CLIENT_DIR / "examples" / "readme" / "main.go").read_text()


@pytest.mark.integration
def test_the_readme_example_reads_its_own_write(binaries: Path, ledger: RunningLedger) -> None:
    assert ledger.credentials is not None
    report = _run(
        binaries / "readme",
        env=_environment(
            LEDGER_CREDENTIALS=str(ledger.credentials.directory),
            LEDGER_COMMAND_ADDRESS=ledger.command_server.address,
            LEDGER_QUERY_ADDRESS=ledger.query_server.address,
        ),
    )
    assert (report["balance"], report["version"]) == ("12.50", 2)
    assert report["accountId"].startswith("go-")
