"""Regenerate the protobuf and gRPC stubs (with .pyi type stubs) from proto/ into ledger/v1/.

Also writes ledger/v1/descriptor_set.binpb: the compiled .proto files with their comments, which
the generated modules leave out, so that server reflection can show the API's documentation.

Usage: python scripts/generate_stubs.py [--out DIR]

The output depends only on the .proto files and the pinned tool versions, so running it twice
changes nothing; CI relies on that to detect stale committed stubs.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from importlib.resources import files
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
PROTO_ROOT = REPO_ROOT / "proto"
GENERATED_PACKAGE = Path("ledger", "v1")
DESCRIPTOR_SET = "descriptor_set.binpb"
GENERATED_PATTERNS = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py", "*_pb2_grpc.pyi", DESCRIPTOR_SET)


def proto_files() -> list[Path]:
    """The .proto files to compile, relative to proto/ and sorted so the command line is stable."""
    return sorted(path.relative_to(PROTO_ROOT) for path in PROTO_ROOT.rglob("*.proto"))


def plugin(name: str) -> Path:
    """A protoc plugin installed next to this interpreter (mypy-protobuf puts them in the venv)."""
    path = Path(sys.executable).parent / name
    if not path.exists():
        raise SystemExit(f"protoc plugin {name!r} not found next to {sys.executable}")
    return path


def remove_generated(out_dir: Path) -> None:
    """Delete earlier output so a removed .proto file does not leave stale stubs behind."""
    package_dir = out_dir / GENERATED_PACKAGE
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


def generate(out_dir: Path) -> None:
    (out_dir / GENERATED_PACKAGE).mkdir(parents=True, exist_ok=True)
    remove_generated(out_dir)
    # Run from proto/ so protoc records the same relative file names wherever the repo lives.
    subprocess.run(protoc_command(out_dir), cwd=PROTO_ROOT, check=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--out",
        type=Path,
        default=REPO_ROOT,
        help="directory that receives ledger/v1/ (default: the repository root)",
    )
    args = parser.parse_args(argv)
    generate(args.out.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
