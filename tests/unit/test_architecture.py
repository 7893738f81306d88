"""The architecture as the README draws it, checked on the source: contracts and the pure domain
depend on no process, processes do not import each other, nothing imports in a circle, and every
module reads in one sitting."""

from __future__ import annotations

import ast
from collections.abc import Iterator
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = ("ledger", "command_server", "projector", "query_server", "devstack", "fault_drill")
PROCESSES = ("command_server", "projector", "query_server")
GENERATED = ROOT / "ledger" / "v1"
MAX_LINES = 400
# Libraries that do I/O: the domain must not reach for any of them.
IO_LIBRARIES = frozenset(
    {"asyncio", "asyncpg", "confluent_kafka", "grpc", "os", "socket", "subprocess", "threading"}
)


def _modules() -> Iterator[tuple[str, Path]]:
    for package in (*PACKAGES, "bench"):
        for path in sorted((ROOT / package).rglob("*.py")):
            if GENERATED in path.parents:
                continue
            parts = path.relative_to(ROOT).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            yield ".".join(parts), path


def _imports(name: str, path: Path) -> set[str]:
    """Every module `name` imports, at any level (TYPE_CHECKING blocks included)."""
    found: set[str] = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = name.split(".")
                base = base[: len(base) - node.level + (1 if is_package else 0)]
                module = ".".join([*base, node.module] if node.module else base)
            else:
                module = node.module or ""
            found.add(module)
            # `from package import module` imports the module.
            found.update(f"{module}.{alias.name}" for alias in node.names)
    return found


@pytest.fixture(scope="module")
def graph() -> dict[str, set[str]]:
    modules = dict(_modules())
    return {
        name: {other for other in _imports(name, path) if other in modules and other != name}
        for name, path in modules.items()
    }


def _cycle(graph: dict[str, set[str]]) -> list[str] | None:
    visiting: list[str] = []
    done: set[str] = set()

    def visit(node: str) -> list[str] | None:
        if node in visiting:
            return [*visiting[visiting.index(node) :], node]
        if node in done:
            return None
        visiting.append(node)
        for other in sorted(graph[node]):
            # A package's __init__ is imported by its modules' import machinery, not by them.
            if node.startswith(other + "."):
                continue
            if (found := visit(other)) is not None:
                return found
        visiting.pop()
        done.add(node)
        return None

    for node in sorted(graph):
        if (found := visit(node)) is not None:
            return found
    return None


def test_no_module_imports_itself_through_others(graph: dict[str, set[str]]) -> None:
    assert _cycle(graph) is None, f"import circle: {' -> '.join(_cycle(graph) or [])}"


def test_the_shared_package_imports_no_process(graph: dict[str, set[str]]) -> None:
    offending = {
        (name, other)
        for name, imported in graph.items()
        if name.split(".")[0] == "ledger"
        for other in imported
        if other.split(".")[0] != "ledger"
    }
    assert not offending


def test_processes_do_not_import_each_other(graph: dict[str, set[str]]) -> None:
    offending = {
        (name, other)
        for name, imported in graph.items()
        if (home := name.split(".")[0]) in PROCESSES
        for other in imported
        if other.split(".")[0] in PROCESSES and other.split(".")[0] != home
    }
    assert not offending


def test_the_domain_does_no_io() -> None:
    for path in sorted((ROOT / "ledger" / "domain").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        libraries = {module.split(".")[0] for module in _imports(name, path)}
        assert not libraries & IO_LIBRARIES, f"{path.name} imports {libraries & IO_LIBRARIES}"


def test_every_module_reads_in_one_sitting() -> None:
    paths = [path for _, path in _modules()] + sorted((ROOT / "tests").rglob("*.py"))
    long = {
        str(path.relative_to(ROOT)): lines
        for path in paths
        if (lines := len(path.read_text().splitlines())) > MAX_LINES
    }
    assert not long, f"modules over {MAX_LINES} lines: {long}"


def test_the_circle_finder_finds_a_circle() -> None:
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None
