"""Telemetry of the real processes: Prometheus /metrics and one JSON log line per event.

The three processes run with LEDGER_LOG_FORMAT=json; after a few real calls, each one's metrics
endpoint must show them. The command server and the projector are marked xfail until their
`main()` and composition roots call ledger.telemetry (see the telemetry issue): then these
tests pass, strict xfail turns that into a failure, and the marks are to be removed.
"""

from __future__ import annotations

import json
import urllib.request
import uuid
from typing import Any

import grpc
import pytest
from prometheus_client.parser import text_string_to_metric_families

from devstack.ledger_services import LedgerService
from ledger.command_ids import new_command_id
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import commands_pb2_grpc as cmd_grpc
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.e2e.running_ledger import RunningLedger
from tests.eventually import eventually

pytestmark = pytest.mark.integration

PROMPTLY_S = 10.0
BANNER = "===== devstack:"
LEDGER_ENV = {"LEDGER_LOG_FORMAT": "json"}  # read by the `ledger` fixture (conftest.py)


@pytest.fixture(scope="module")
async def traffic(ledger: RunningLedger) -> str:
    """An account opened, a deposit, an overdraft refused, reads found and not found."""
    account = f"eco-{uuid.uuid4().hex[:10]}"
    async with (
        grpc.aio.insecure_channel(ledger.command_server.address) as commands_channel,
        grpc.aio.insecure_channel(ledger.query_server.address) as queries_channel,
    ):
        commands = cmd_grpc.CommandServiceStub(commands_channel)
        queries = pb_grpc.QueryServiceStub(queries_channel)
        await commands.OpenAccount(
            cmd.OpenAccountRequest(command_id=new_command_id(), account_id=account, currency="EUR")
        )
        deposited = await commands.Deposit(
            cmd.DepositRequest(command_id=new_command_id(), account_id=account, amount="5")
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await commands.Withdraw(
                cmd.WithdrawRequest(command_id=new_command_id(), account_id=account, amount="9")
            )
        await queries.GetAccount(
            pb.GetAccountRequest(account_id=account, consistency_token=deposited.consistency_token),
            timeout=PROMPTLY_S,
        )
        with pytest.raises(grpc.aio.AioRpcError):
            await queries.GetAccount(pb.GetAccountRequest(account_id="no-such-account"))
    return account


def _samples(address: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """The metrics at http://address/metrics: (name, labels) -> value.

    Metrics are recorded as calls finish, just after their callers hear back: tests wait for
    the values they expect with `eventually`."""
    try:
        with urllib.request.urlopen(f"http://{address}/metrics", timeout=PROMPTLY_S) as reply:
            text = reply.read().decode()
    except OSError as error:  # not serving yet: a condition for `eventually` to wait on
        raise AssertionError(f"no metrics at {address}: {error}") from error
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def _value(
    samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str
) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


def _json_log_lines(service: LedgerService) -> list[dict[str, Any]]:
    """The current run's log lines, each of which must be a JSON object."""
    text = service.log_text().rsplit(BANNER, 1)[1].split("\n", 1)[1]
    return [json.loads(line) for line in text.splitlines() if line.strip()]


def test_the_query_server_exports_its_latency_by_method_and_code(
    ledger: RunningLedger, traffic: str
) -> None:
    def check() -> bool:
        samples = _samples(ledger.query_metrics)
        method = {"grpc_type": "unary", "grpc_service": "ledger.v1.QueryService"}
        get = {**method, "grpc_method": "GetAccount"}
        assert _value(samples, "grpc_server_handled_total", **get, grpc_code="OK") >= 1
        assert _value(samples, "grpc_server_handled_total", **get, grpc_code="NOT_FOUND") >= 1
        assert _value(samples, "grpc_server_handling_seconds_count", **get) >= 2
        # prometheus_client's process collector: the default registry is the one exported.
        assert _value(samples, "process_resident_memory_bytes") > 0
        return True

    eventually(check, timeout=PROMPTLY_S)


def test_the_query_server_logs_one_json_object_per_line(
    ledger: RunningLedger, traffic: str
) -> None:
    events = _json_log_lines(ledger.query_server)
    assert events, "the query server logged nothing"
    assert {event["service"] for event in events} == {"query-server"}
    assert any("serving ledger.v1.QueryService" in event["message"] for event in events)


def test_the_command_server_exports_commands_and_its_group_commit(
    ledger: RunningLedger, traffic: str
) -> None:
    def check() -> bool:
        samples = _samples(ledger.command_metrics)
        method = {"grpc_type": "unary", "grpc_service": "ledger.v1.CommandService"}
        for name, code in (("OpenAccount", "OK"), ("Withdraw", "FAILED_PRECONDITION")):
            labels = {**method, "grpc_method": name, "grpc_code": code}
            assert _value(samples, "grpc_server_handled_total", **labels) >= 1
        assert _value(samples, "ledger_command_batch_size_count") >= 2
        assert _value(samples, "ledger_command_commit_seconds_count") >= 2
        return True

    eventually(check, timeout=PROMPTLY_S)


def test_the_command_server_logs_one_json_object_per_line(
    ledger: RunningLedger, traffic: str
) -> None:
    assert {e["service"] for e in _json_log_lines(ledger.command_server)} == {"command-server"}


def test_the_projector_exports_its_progress_on_its_status_endpoint(
    ledger: RunningLedger, traffic: str
) -> None:
    def check() -> bool:
        samples = _samples(ledger.projector.address)
        topic = {"topic": ledger.topic}
        assert _value(samples, "ledger_projector_events_applied_total", **topic) >= 2
        assert _value(samples, "ledger_projector_dead_letters_total", **topic) == 0
        assert _value(samples, "ledger_projector_consuming", **topic) == 1
        return True

    eventually(check, timeout=PROMPTLY_S)


def test_the_projector_logs_one_json_object_per_line(ledger: RunningLedger, traffic: str) -> None:
    assert {e["service"] for e in _json_log_lines(ledger.projector)} == {"projector"}
