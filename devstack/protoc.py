"""The protoc that compiles the API for the TypeScript and Go clients' stub generators.

It is the one in grpcio-tools (pinned in constraints.txt), which also compiles the Python stubs,
run from proto/ so that the generated files record the same relative names wherever the repo
lives; the .proto files are listed sorted, so the command line, and the output, are stable.
"""

from __future__ import annotations

import sys
from importlib.resources import files

from devstack.locations import PROJECT_ROOT

PROTO_ROOT = PROJECT_ROOT / "proto"


def proto_files() -> list[str]:
    """The API's .proto files, relative to proto/, sorted for a stable command line."""
    return sorted(str(path.relative_to(PROTO_ROOT)) for path in PROTO_ROOT.rglob("*.proto"))


def protoc_command(*plugin_arguments: str) -> list[str]:
    """protoc with `plugin_arguments` (--plugin, --*_out, --*_opt) over every .proto file; run it
    with cwd=PROTO_ROOT."""
    return [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={files('grpc_tools').joinpath('_proto')}",  # google/protobuf/*.proto
        *plugin_arguments,
        *proto_files(),
    ]
