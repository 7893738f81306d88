"""Regenerate the protobuf and gRPC stubs (with .pyi type stubs) from proto/ into ledger/v1/ and
into the Python client's package, clients/python/src/ledger_client/v1/.

Also writes ledger/v1/descriptor_set.binpb: the compiled .proto files with their comments, which
the generated modules leave out, so that server reflection can show the API's documentation.

The client's copy is the same protoc output with only its Python module paths moved from
`ledger.v1` to `ledger_client.v1`: it registers the same file names (`ledger/v1/*.proto`) with
byte-identical descriptors, and protobuf's default pool accepts a file added twice when its
content is identical, so a process may import both the server's and the client's stubs. (Renamed
files would clash instead: the message names `ledger.v1.*` are what the wire needs.)

Usage: python scripts/generate_stubs.py [--out DIR]

The output depends only on the .proto files and the pinned tool versions, so running it twice
changes nothing; CI relies on that to detect stale committed stubs.
"""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
GENERATED_PACKAGE = Path("ledger", "v1")
DESCRIPTOR_SET = "descriptor_set.binpb"
GENERATED_PATTERNS = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "*_pb2_grpc.pyi", DESCRIPTOR_SET)
CLIENT_PACKAGE = Path("clients", "python", "src", "ledger_client", "v1")
# `from ledger.v1 import x_pb2`, `import ledger.v1.x_pb2` and the module name protoc writes into
# each _pb2.py ('ledger.v1.x_pb2'); message and service names (`ledger.v1.Account`) stay.
_SERVER_MODULE = re.compile(r"\bledger\.v1(?=\.\w+_pb2\b| import )")


def proto_files() -> list[Path]:
    """The .proto files to compile, relative to proto/ and sorted so the command line is stable."""
    return sorted(path.relative_to(PROTO_ROOT) for path in PROTO_ROOT.rglob("*.proto"))


def plugin(name: str) -> Path:
    """A protoc plugin installed next to this interpreter (mypy-protobuf puts them in the venv)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"protoc plugin {name!r} not found next to {sys.executable}")
    return path


def remove_generated(package_dir: Path) -> None:
    """Delete earlier output so a removed .proto file does not leave stale stubs behind."""
    for pattern in GENERATED_PATTERNS:
        for path in package_dir.glob(pattern):
            path.unlink()


def protoc_command(out_dir: Path) -> list[str]:
    well_known_types = files("grpc_tools").joinpath("_proto")
    return [
        sys.executable,
        "-m",
        "grpc_tools.protoc",
        f"--proto_path={PROTO_ROOT}",
        f"--proto_path={well_known_types}",
        f"--plugin=protoc-gen-mypy={plugin('protoc-gen-mypy')}",
        f"--plugin=protoc-gen-mypy_grpc={plugin('protoc-gen-mypy_grpc')}",
        f"--python_out={out_dir}",
        f"--grpc_python_out={out_dir}",
        f"--mypy_out=quiet:{out_dir}",
        f"--mypy_grpc_out=quiet:{out_dir}",
        "--include_source_info",
        "--include_imports",
        f"--descriptor_set_out={out_dir / GENERATED_PACKAGE / DESCRIPTOR_SET}",
        *(str(path) for path in proto_files()),
    ]


def write_client_copy(server_package: Path, client_package: Path) -> None:
    """The client's stubs: the server's, with the Python module paths moved (see the docstring)."""
    client_package.mkdir(parents=True, exist_ok=True)
    remove_generated(client_package)
    for pattern in GENERATED_PATTERNS[:-1]:  # the descriptor set is for reflection: server only
        for source in sorted(server_package.glob(pattern)):
            text = _SERVER_MODULE.sub("ledger_client.v1", source.read_text())
            (client_package / source.name).write_text(text)


def generate(out_dir: Path) -> None:
    package_dir = out_dir / GENERATED_PACKAGE
    package_dir.mkdir(parents=True, exist_ok=True)
    remove_generated(package_dir)
    # Run from proto/ so protoc records the same relative file names wherever the repo lives.
    subprocess.run(protoc_command(out_dir), cwd=PROTO_ROOT, check=True)
    write_client_copy(package_dir, out_dir / CLIENT_PACKAGE)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT,
        help="directory that receives ledger/v1/ and clients/python/... (default: the repo root)",
    )
    args = parser.parse_args(argv)
    generate(args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
