"""Generate the Go client's gRPC stubs from proto/ledger/v1.

Usage: python clients/go/generate.py [--module-dir DIR]

Writes `<DIR>/internal/ledgerv1/*.pb.go` (DIR defaults to clients/go, where that folder is
git-ignored: the stubs are generated, never committed, so they cannot go stale). protoc is the
one in grpcio-tools, which also compiles the Python stubs; its Go plugins, protoc-gen-go and
protoc-gen-go-grpc, are built with `go install` at the versions pinned in devstack/go_tools.py.
The .proto files name no Go package, so this script maps them to ours (protoc's M option).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

from devstack.go_tools import PROTOC_GEN_GO, PROTOC_GEN_GO_GRPC, ensure_go_tool

CLIENT_DIR = Path(__file__).resolve().parent
PROTO_ROOT = CLIENT_DIR.parent.parent / "proto"
GO_MODULE = "ledger/clients/go"
GO_PACKAGE = f"{GO_MODULE}/internal/ledgerv1"


def proto_files() -> list[str]:
    """The API's .proto files, relative to proto/, sorted for a stable command line."""
    return sorted(str(path.relative_to(PROTO_ROOT)) for path in PROTO_ROOT.rglob("*.proto"))


def protoc_command(module_dir: Path, protoc_gen_go: Path, protoc_gen_go_grpc: Path) -> list[str]:
    sources = proto_files()
    # Both plugins need every file's Go import path; `module=` strips our module's prefix from
    # the output paths, so the files land in <module_dir>/internal/ledgerv1.
    options = [f"M{source}={GO_PACKAGE};ledgerv1" for source in sources] + [f"module={GO_MODULE}"]
    return [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={files('grpc_tools').joinpath('_proto')}",  # google/protobuf/*.proto
        f"--plugin=protoc-gen-go={protoc_gen_go}",
        f"--plugin=protoc-gen-go-grpc={protoc_gen_go_grpc}",
        f"--go_out={module_dir}",
        f"--go-grpc_out={module_dir}",
        *(f"--go_opt={option}" for option in options),
        *(f"--go-grpc_opt={option}" for option in options),
        *sources,
    ]


def generate(module_dir: Path) -> Path:
    """Write the stubs below `module_dir` and return their folder."""
    package_dir = module_dir / "internal" / "ledgerv1"
    package_dir.mkdir(parents=True, exist_ok=True)
    # A .proto file that was removed must not leave its stubs behind.
    for stale in package_dir.glob("*.pb.go"):
        stale.unlink()
    command = protoc_command(
        module_dir, ensure_go_tool(PROTOC_GEN_GO), ensure_go_tool(PROTOC_GEN_GO_GRPC)
    )
    subprocess.run(command, cwd=PROTO_ROOT, check=True)
    return package_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--module-dir",
        type=Path,
        default=CLIENT_DIR,
        help="the Go module to generate into (default: clients/go)",
    )
    args = parser.parse_args(argv)
    print(generate(args.module_dir.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
