"""Hostile input against the real servers (TLS, tokens): every refusal is a documented status,
never INTERNAL or UNKNOWN; the servers keep serving; refused commands append nothing; the
projector keeps up.

`LEDGER_FUZZ_EXAMPLES` sets how many generated calls the fuzz makes: a few hundred in
`make test`, 10,000 in `make fuzz`.
"""

from __future__ import annotations

import os
from collections import Counter

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc
from hypothesis import HealthCheck, given, settings

from devstack.stack import LocalStack
from ledger.command_ids import new_command_id
from ledger.events.codec import EventCodec
from ledger.events.schema_store import ConfluentSchemaStore
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import queries_pb2 as q
from projector.consumed import DecodedRecord
from tests.e2e.running_ledger import RunningLedger
from tests.eventually import eventually
from tests.fuzz.conftest import Fuzzer
from tests.fuzz.requests import COMMANDS, QUERIES, Call, calls
from tests.integration.projector.event_log import records_of

pytestmark = pytest.mark.integration

EXAMPLES = int(os.environ.get("LEDGER_FUZZ_EXAMPLES", "300"))
_BUGS = (grpc.StatusCode.INTERNAL, grpc.StatusCode.UNKNOWN)
_CATCH_UP_S = 60.0


def test_an_owner_with_a_nul_is_refused_naming_owner(fuzzer: Fuzzer) -> None:
    request = cmd.OpenAccountRequest(
        command_id=new_command_id(), account_id="fz-nul", currency="EUR", owner="Ada\x00Lovelace"
    )
    code, details = fuzzer.call(Call(COMMANDS, "OpenAccount", request, "right"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert details.startswith("owner contains"), details
    # The read side stays healthy: it answers, up to the last command accepted.
    code, details = fuzzer.call(
        Call(QUERIES, "GetAccount", q.GetAccountRequest(account_id="fz-eur-1"), "right")
    )
    assert code == grpc.StatusCode.OK, details
    code, _ = fuzzer.call(
        Call(QUERIES, "GetAccount", q.GetAccountRequest(account_id="fz-nul"), "right")
    )
    assert code == grpc.StatusCode.NOT_FOUND


@pytest.mark.parametrize(
    ("service", "method", "message"),
    [
        (COMMANDS, "OpenAccount", cmd.OpenAccountRequest),
        (COMMANDS, "Transfer", cmd.TransferRequest),
        (QUERIES, "GetAccount", q.GetAccountRequest),
        (QUERIES, "WatchAccount", q.WatchAccountRequest),
    ],
)
def test_a_string_that_is_not_utf8_is_invalid_argument_on_both_servers(
    fuzzer: Fuzzer, service: str, method: str, message: type[object]
) -> None:
    not_utf8 = b"\x12\x03a\xff\xfe"  # field 2, a string on every message here
    code, details = fuzzer.call(Call(service, method, not_utf8, "right"))
    assert code == grpc.StatusCode.INVALID_ARGUMENT
    assert f"not a valid {message.DESCRIPTOR.full_name}" in details  # type: ignore[attr-defined]
    assert "UTF-8" in details


@settings(
    max_examples=EXAMPLES,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
@given(call=calls())
def test_no_call_is_answered_internal_or_unknown(fuzzer: Fuzzer, call: Call) -> None:
    code, details = fuzzer.call(call)
    assert code not in _BUGS, f"{call!r} answered {code.name}: {details}"


def test_after_the_fuzz_both_servers_serve(fuzzer: Fuzzer) -> None:
    for channel in (fuzzer.commands, fuzzer.queries):
        health = health_pb2_grpc.HealthStub(channel)
        reply = health.Check(health_pb2.HealthCheckRequest(), timeout=5)
        assert reply.status == health_pb2.HealthCheckResponse.SERVING


def test_after_the_fuzz_the_log_holds_exactly_the_accepted_commands(
    fuzzer: Fuzzer, ledger: RunningLedger, stack: LocalStack
) -> None:
    calls_made = sum(fuzzer.codes.values())
    print(
        f"{calls_made} calls:",
        ", ".join(f"{m} {c} {n}" for (m, c), n in sorted(fuzzer.codes.items())),
    )
    assert calls_made >= EXAMPLES
    accepted_deep = sum(n for (m, c), n in fuzzer.codes.items() if c == "OK" and m != "OpenAccount")
    assert accepted_deep > 0, fuzzer.codes  # valid calls ran the deep paths too
    codec = EventCodec(ConfluentSchemaStore.connect(stack.registry_url))
    records = records_of(stack, ledger.topic, codec)
    assert all(isinstance(record, DecodedRecord) for record in records)
    logged = Counter(record.event.command_id for record in records)  # type: ignore[union-attr]
    unsettled = {i: n for i, n in logged.items() if i in fuzzer.unsettled}
    assert {i: n for i, n in logged.items() if i not in unsettled} == fuzzer.accepted
    assert all(fuzzer.unsettled[i] == n for i, n in unsettled.items())


def test_after_the_fuzz_the_projector_caught_up_and_runs(
    fuzzer: Fuzzer, ledger: RunningLedger, stack: LocalStack
) -> None:
    codec = EventCodec(ConfluentSchemaStore.connect(stack.registry_url))
    last: dict[int, int] = {}
    for record in records_of(stack, ledger.topic, codec):
        last[record.partition] = max(record.offset, last.get(record.partition, -1))

    def caught_up() -> bool:
        code, _ = fuzzer.call(
            Call(QUERIES, "GetProjectionStatus", q.GetProjectionStatusRequest(), "right")
        )
        assert code == grpc.StatusCode.OK
        status = q.GetProjectionStatusResponse.FromString(fuzzer.last_reply)
        applied = {p.partition: p.checkpoint_offset for p in status.partitions}
        return all(applied.get(p, -1) >= offset for p, offset in last.items())

    eventually(caught_up, timeout=_CATCH_UP_S, interval=0.2, message="projector catching up")
    assert ledger.projector.is_running()
