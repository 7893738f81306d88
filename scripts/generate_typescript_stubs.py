"""Generate the TypeScript client's stubs from proto/ledger/v1 into clients/typescript/src/gen.

Usage: python scripts/generate_typescript_stubs.py [--out DIR]

The generator is ts-proto: its `protoc-gen-ts_proto` plugin, pinned in package-lock.json and
installed by `npm ci` when node_modules is missing or stale (devstack/node_tools.py), run by the
protoc in grpcio-tools that also compiles the Python stubs. The output depends only on the .proto
files and the pinned versions: `make check-generated` regenerates and fails if the committed
files differ.
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
from pathlib import Path

from devstack.node_tools import TYPESCRIPT_CLIENT as CLIENT_DIR
from devstack.node_tools import ensure_node_modules
from devstack.protoc import PROTO_ROOT, protoc_command

DEFAULT_OUT = CLIENT_DIR / "src" / "gen"
# outputServices=grpc-js: service definitions and client classes for @grpc/grpc-js.
# esModuleInterop: import grpc-js the way tsconfig.json's esModuleInterop expects.
# (useOptionals stays "none": only proto3 `optional` fields, expected_version, may be undefined.)
# forceLong=number: versions are small counts; ts-proto throws rather than round a huge one.
# useDate=true: Timestamps are Dates. useExactTypes=false: fromPartial accepts plain objects.
# annotateFilesWithVersion=false: the versions are pinned in package-lock.json and constraints.txt,
# and a header naming them would only repeat them.
TS_PROTO_OPTIONS = [
    "outputServices=grpc-js",
    "esModuleInterop=true",
    "env=node",
    "forceLong=number",
    "useDate=true",
    "useExactTypes=false",
    "outputJsonMethods=false",
    "outputPartialMethods=true",
    "stringEnums=false",
    "comments=true",
    "addGrpcMetadata=false",
    "annotateFilesWithVersion=false",
]


def plugin() -> Path:
    return ensure_node_modules(CLIENT_DIR) / ".bin" / "protoc-gen-ts_proto"


def protoc_arguments(out_dir: Path) -> list[str]:
    return [
        f"--plugin=protoc-gen-ts_proto={plugin()}",
        f"--ts_proto_out={out_dir}",
        f"--ts_proto_opt={','.join(TS_PROTO_OPTIONS)}",
    ]


def generate(out_dir: Path) -> Path:
    """Write the stubs into `out_dir` (emptied first, so a removed .proto leaves nothing behind)."""
    if out_dir.exists():
        shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True)
    # Run from proto/ so the files record the same relative names wherever the repo lives.
    subprocess.run(protoc_command(*protoc_arguments(out_dir)), cwd=PROTO_ROOT, check=True)
    return out_dir


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="default: src/gen")
    args = parser.parse_args(argv)
    print(generate(args.out.resolve()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
