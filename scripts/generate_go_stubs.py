"""Generate the Go client's stubs from proto/ledger/v1 into clients/go/ledgerv1.

Usage: python scripts/generate_go_stubs.py [--module-dir DIR]

Writes `<DIR>/ledgerv1/*.pb.go` (DIR defaults to clients/go, the Go module `ledger/clients/go`).
The stubs are committed, so that `go get` needs no protoc; `make check-generated` regenerates
them and fails if the committed files differ. protoc is the one in grpcio-tools, which also
compiles the Python stubs; its Go plugins, protoc-gen-go and protoc-gen-go-grpc, are built with
`go install` at the versions pinned in devstack/go_tools.py (protoc-gen-go at the
google.golang.org/protobuf that clients/go/go.mod requires). The .proto files name no Go package,
so this script maps them to ours (protoc's M option).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

from devstack.go_tools import PROTOC_GEN_GO, PROTOC_GEN_GO_GRPC, ensure_go_tool
from devstack.protoc import PROTO_ROOT, proto_files, protoc_command

CLIENT_DIR = Path(__file__).resolve().parent.parent / "clients" / "go"
GO_MODULE = "ledger/clients/go"
GO_PACKAGE = f"{GO_MODULE}/ledgerv1"


def protoc_arguments(module_dir: Path, protoc_gen_go: Path, protoc_gen_go_grpc: Path) -> list[str]:
    # Both plugins need every file's Go import path; `module=` strips our module's prefix from
    # the output paths, so the files land in <module_dir>/ledgerv1.
    options = [f"M{source}={GO_PACKAGE};ledgerv1" for source in proto_files()]
    options.append(f"module={GO_MODULE}")
    return [
        f"--plugin=protoc-gen-go={protoc_gen_go}",
        f"--plugin=protoc-gen-go-grpc={protoc_gen_go_grpc}",
        f"--go_out={module_dir}",
        f"--go-grpc_out={module_dir}",
        *(f"--go_opt={option}" for option in options),
        *(f"--go-grpc_opt={option}" for option in options),
    ]


def generate(module_dir: Path) -> Path:
    """Write the stubs below `module_dir` and return their folder."""
    package_dir = module_dir / "ledgerv1"
    package_dir.mkdir(parents=True, exist_ok=True)
    # A .proto file that was removed must not leave its stubs behind.
    for stale in package_dir.glob("*.pb.go"):
        stale.unlink()
    arguments = protoc_arguments(
        module_dir, ensure_go_tool(PROTOC_GEN_GO), ensure_go_tool(PROTOC_GEN_GO_GRPC)
    )
    subprocess.run(protoc_command(*arguments), cwd=PROTO_ROOT, check=True)
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
