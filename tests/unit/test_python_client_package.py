"""The Python client's package (clients/python) beside the servers' own stubs, without a server."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

CLIENT = Path(__file__).resolve().parents[2] / "clients" / "python"
STUBS = ("commands_pb2", "commands_pb2_grpc", "queries_pb2", "queries_pb2_grpc")


@pytest.mark.parametrize("first", ["ledger", "ledger_client"])
def test_a_process_may_import_the_servers_and_the_clients_stubs(first: str) -> None:
    """Both register ledger/v1/*.proto in protobuf's default pool; identical content is accepted
    (scripts/generate_stubs.py makes the client's copy from the same protoc run), in either order.
    A fresh interpreter each: the pool is per process."""
    second = "ledger_client" if first == "ledger" else "ledger"
    program = "\n".join(
        [
            *(f"import {package}.v1.{stub}" for package in (first, second) for stub in STUBS),
            "from ledger.v1 import commands_pb2 as server",
            "from ledger_client.v1 import commands_pb2 as client",
            "message = client.DepositRequest(command_id='c', account_id='a', amount='1.5')",
            "assert server.DepositRequest.FromString(message.SerializeToString()) == message",
            "assert server.DESCRIPTOR.serialized_pb == client.DESCRIPTOR.serialized_pb",
        ]
    )
    environment = {**os.environ, "PYTHONPATH": str(CLIENT / "src")}
    result = subprocess.run(
        [sys.executable, "-c", program],
        env=environment,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr


def test_the_clients_dependencies_admit_no_runtime_older_than_its_stubs_need() -> None:
    """The stubs refuse an older protobuf or grpcio at import; the package must not install one."""
    stubs = CLIENT / "src" / "ledger_client" / "v1"
    protobuf = re.search(r"Protobuf Python Version: (\S+)", (stubs / "commands_pb2.py").read_text())
    grpcio = re.search(
        r"GRPC_GENERATED_VERSION = '(\S+)'", (stubs / "commands_pb2_grpc.py").read_text()
    )
    assert protobuf
    assert grpcio
    project = tomllib.loads((CLIENT / "pyproject.toml").read_text())["project"]
    assert sorted(project["dependencies"]) == [
        f"grpcio>={grpcio.group(1)}",
        f"protobuf>={protobuf.group(1)}",
    ]
