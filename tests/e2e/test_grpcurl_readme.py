"""The README's grpcurl commands, run exactly as written against real servers.

The block between the README's `grpcurl-commands` markers is run by bash, command after command
in one shell (so `TOKEN=$(...)` carries over), with only `make run`'s addresses and credentials
directory replaced by the test servers', which serve TLS and require tokens as `make run`'s do.
What each command prints is checked, and the whole block is run twice in the same shell: the
README promises that repeating it there is safe (its command ids are made once per shell).
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from devstack.__main__ import _print_grpcurl_hints
from devstack.go_tools import GRPCURL, ensure_go_tool
from devstack.ledger_services import LedgerService
from ledger.consistency import ConsistencyToken
from ledger.reflection import documented_descriptors
from tests.e2e.running_ledger import RunningLedger

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- grpcurl-commands:begin -->", "<!-- grpcurl-commands:end -->"
COMMAND_ADDR, QUERY_ADDR = "127.0.0.1:50051", "127.0.0.1:50052"
SERVICES = {COMMAND_ADDR: "ledger.v1.CommandService", QUERY_ADDR: "ledger.v1.QueryService"}
CREDENTIALS = ".data/credentials"
BLOCK_TIMEOUT_S = 120.0
# The test's servers run as `make run`'s do: TLS with the local CA, tokens required.
LEDGER_SECURE = True
# The block's lines that make a command id, once per shell.
NEW_COMMAND_ID = re.compile(
    r"[A-Z_]+=\$\{[A-Z_]+:-\$\(\.venv/bin/python -m ledger\.command_ids\)\}"
)


def readme_commands() -> list[str]:
    """The block's commands: comments and blank lines dropped, continuation lines joined."""
    text = README.read_text()
    assert text.count(BEGIN) == text.count(END) == 1, "README lost its grpcurl markers"
    block = text.split(BEGIN, 1)[1].split(END, 1)[0].strip()
    assert re.fullmatch(r"```sh\n.*\n```", block, re.DOTALL), "expected one sh code block"
    lines = block.removeprefix("```sh\n").removesuffix("\n```")
    joined = re.sub(r"\\\n\s*", "", lines)
    return [line for line in joined.splitlines() if line.strip() and not line.startswith("#")]


def _address(command: str) -> str:
    [address] = [a for a in SERVICES if a in command]
    return address


def _payload(command: str) -> dict[str, Any]:
    """The request of a call, as written after -d (JSON; a shell variable stays unexpanded)."""
    words = shlex.split(command)
    payload = json.loads(words[words.index("-d") + 1])
    assert isinstance(payload, dict)
    return payload


def _method(command: str) -> str | None:
    found = re.search(r"\bledger\.v1\.\w+Service/(\w+)", command)
    return found.group(1) if found else None


def _leading_comment(symbol: str) -> str:
    """The documentation comment of a service or message, from the compiled .proto files."""
    for file in documented_descriptors().values():
        # Source locations name declarations by path: [6, i] is service i, [4, i] message i.
        paths = {f"{file.package}.{s.name}": [6, i] for i, s in enumerate(file.service)}
        paths |= {f"{file.package}.{m.name}": [4, i] for i, m in enumerate(file.message_type)}
        for location in file.source_code_info.location:
            if symbol in paths and list(location.path) == paths[symbol]:
                return str(location.leading_comments)
    raise AssertionError(f"{symbol} is not declared in proto/")


def test_the_readme_lists_describes_and_calls_each_service() -> None:
    commands = readme_commands()
    for address, service in SERVICES.items():
        mine = [c for c in commands if address in c]
        assert any(c.endswith(f"{address} list") for c in mine), f"no list for {service}"
        assert any(c.endswith(f"describe {service}") for c in mine), f"no describe of {service}"
        assert any(f"{service}/" in c for c in mine), f"no call to {service}"
    made = [c for c in commands if NEW_COMMAND_ID.fullmatch(c)]
    assert len(made) == 4, "an id for the opening, the deposit and each command of the batch"
    for command in (c for c in commands if c not in made):
        assert command.startswith(("grpcurl ", "TOKEN=$(grpcurl ")), command
        _address(command)  # exactly one of make run's addresses, which the test replaces
        assert f"-cacert {CREDENTIALS}/ca.pem " in command, f"not over TLS: {command}"
        if "ledger.v1." in command:
            assert f"Bearer $(cat {CREDENTIALS}/writer.token)" in command, f"no token: {command}"
    calls = [_method(c) for c in commands]
    assert calls.index("GetAccount") > calls.index("Deposit") > calls.index("OpenAccount")
    assert calls.index("GetAccount") > calls.index("ExecuteBatch") > calls.index("Deposit")
    for read in ("GetAccount", "GetAccounts"):
        assert "consistency_token" in commands[calls.index(read)]


def test_the_readme_installs_the_grpcurl_the_tests_use() -> None:
    assert f"go install {GRPCURL.package}@{GRPCURL.version}" in README.read_text()


def test_make_run_suggests_commands_of_the_readme(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    services = [
        LedgerService(name, name, env={}, log_file=tmp_path / name, address=address, ready=bool)
        for name, address in (
            ("command-server", COMMAND_ADDR),
            ("projector", "127.0.0.1:9464"),
            ("query-server", QUERY_ADDR),
        )
    ]
    _print_grpcurl_hints(services, CREDENTIALS)
    printed = [line.strip() for line in capsys.readouterr().out.splitlines()]
    suggested = [line for line in printed if line.startswith("grpcurl ")]
    assert len(suggested) == 4
    assert set(suggested) <= set(readme_commands())


@dataclass(frozen=True)
class Ran:
    command: str
    output: str


def run_block(commands: list[str], ledger: RunningLedger, grpcurl: Path) -> list[Ran]:
    """Run `commands` in one bash, in order, stopping at the first failure; what each printed."""
    marker = f"--- {uuid.uuid4().hex} ---"
    script = ["set -euo pipefail"]
    assert ledger.credentials is not None, "the README's commands need a secure ledger"
    for command in commands:
        script.append(f"echo '{marker}'")
        script.append(
            command.replace(COMMAND_ADDR, ledger.command_server.address)
            .replace(QUERY_ADDR, ledger.query_server.address)
            .replace(CREDENTIALS, str(ledger.credentials.directory))
        )
    result = subprocess.run(
        ["bash", "-c", "\n".join(script)],
        capture_output=True,
        text=True,
        check=False,
        timeout=BLOCK_TIMEOUT_S,
        # The pinned grpcurl first; bash and jq from the machine.
        env={**os.environ, "PATH": f"{grpcurl.parent}{os.pathsep}{os.environ.get('PATH', '')}"},
    )
    outputs = result.stdout.split(f"{marker}\n")[1:]
    assert result.returncode == 0, (
        f"the README's command {commands[len(outputs) - 1]!r} failed "
        f"(exit {result.returncode}): {result.stderr.strip()}"
    )
    return [Ran(c, o.strip()) for c, o in zip(commands, outputs, strict=True)]


@pytest.mark.integration
def test_the_readmes_grpcurl_commands_work_as_written(ledger: RunningLedger) -> None:
    grpcurl = ensure_go_tool(GRPCURL)
    assert shutil.which("jq"), "the README's commands need jq (apt-get install jq)"
    commands = readme_commands()
    # Twice in one shell: the second run retries the first's commands.
    both = run_block(commands + commands, ledger, grpcurl)
    first, second = both[: len(commands)], both[len(commands) :]
    for ran in first:
        _check(ran)
    by_method = {_method(ran.command): ran for ran in first}
    opening = _payload(by_method["OpenAccount"].command)
    deposits = [_payload(r.command) for r in first if _method(r.command) == "Deposit"]
    opened = json.loads(by_method["OpenAccount"].output)
    assert opened["version"] == "1"
    read = json.loads(by_method["GetAccount"].output)
    account = read["account"]
    assert {k: account[k] for k in ("accountId", "currency", "owner", "status")} == {
        "accountId": opening["account_id"],
        "currency": opening["currency"],
        "owner": opening["owner"],
        "status": "ACCOUNT_STATUS_OPEN",
    }
    # Only a read that waited for the batch's token can see it: nothing else waits for it.
    moved = _payload(by_method["ExecuteBatch"].command)["commands"][1]["transfer"]
    assert moved["from_account_id"] == opening["account_id"]
    paid_in = sum(Decimal(d["amount"]) for d in deposits)
    assert Decimal(account["balance"]) == paid_in - Decimal(moved["amount"])
    assert account["version"] == str(1 + len(deposits) + 1)
    covered = ConsistencyToken.decode(read["freshness"]["consistencyToken"]).positions
    assert ConsistencyToken.decode(opened["consistencyToken"]).covered_by(covered)
    many = json.loads(by_method["GetAccounts"].output)
    balances = {a["accountId"]: Decimal(a["balance"]) for a in many["accounts"]}
    assert balances == {
        opening["account_id"]: Decimal(account["balance"]),
        moved["to_account_id"]: Decimal(moved["amount"]),
    }
    assert many["missing"] == ["nobody"]

    assert [r.output for r in second] == [r.output for r in first], "the block is not repeatable"


def _check(ran: Ran) -> None:
    """What a command of a given kind must print, whichever service it is for."""
    command, output = ran.command, ran.output
    if NEW_COMMAND_ID.fullmatch(command):
        assert output == "", "making an id should print nothing"
        return
    address = _address(command)
    if command.endswith(" list"):
        expected = {SERVICES[address], "grpc.health.v1.Health"}
        assert expected <= set(output.split()), output
    elif " describe " in command:
        symbol = command.rsplit(" ", 1)[1]
        comment = _leading_comment(symbol)
        assert comment, f"{symbol} has no documentation to show"
        for line in comment.splitlines():
            assert line.strip() in output, f"describe {symbol} lacks {line.strip()!r}"
    elif command.endswith("grpc.health.v1.Health/Check"):
        assert json.loads(output) == {"status": "SERVING"}
    elif command.startswith("TOKEN="):
        assert output == "", "a captured answer should print nothing"
    else:
        assert isinstance(json.loads(output), dict), output
