"""Metrics: the servers' per-method wrapper on a real in-process server, the exporter, the
process sets."""

from __future__ import annotations

import asyncio
import logging
import socket
import urllib.error
import urllib.request
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from prometheus_client import CollectorRegistry

from ledger.call_wrapping import method_wrapping
from ledger.telemetry.exporter import start_metrics_exporter
from ledger.telemetry.metrics import (
    CommandMetrics,
    GrpcServerMetrics,
    ProjectorCollector,
    exposition,
)
from tests.eventually import eventually_async

SERVICE = "test.v1.Probe"
PROMPTLY_S = 5.0


class ProbeService:
    """Raw-bytes methods that end in each way a servicer can end."""

    def __init__(self) -> None:
        self.stream_closed = asyncio.Event()

    async def echo(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        return request

    async def refuse(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await context.abort(grpc.StatusCode.FAILED_PRECONDITION, "insufficient funds")
        raise AssertionError("abort returned")

    async def mark(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        context.set_code(grpc.StatusCode.NOT_FOUND)
        return b""

    async def crash(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        raise RuntimeError("a bug")

    async def hang(self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        await asyncio.Event().wait()
        raise AssertionError("never set")

    async def count(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        for n in range(int(request)):
            yield str(n).encode()

    async def forever(
        self, request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        try:
            while True:
                yield b"tick"
                await asyncio.sleep(0.01)
        finally:
            self.stream_closed.set()

    async def total(
        self, requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        return str(sum([int(r) async for r in requests])).encode()

    def handler(self) -> grpc.GenericRpcHandler:
        unary = grpc.unary_unary_rpc_method_handler
        return grpc.method_handlers_generic_handler(
            SERVICE,
            {
                "Echo": unary(self.echo),
                "Refuse": unary(self.refuse),
                "Mark": unary(self.mark),
                "Crash": unary(self.crash),
                "Hang": unary(self.hang),
                "Count": grpc.unary_stream_rpc_method_handler(self.count),
                "Forever": grpc.unary_stream_rpc_method_handler(self.forever),
                "Total": grpc.stream_unary_rpc_method_handler(self.total),
            },
        )


class Served:
    def __init__(
        self, registry: CollectorRegistry, service: ProbeService, channel: grpc.aio.Channel
    ) -> None:
        self.registry = registry
        self.service = service
        self.channel = channel

    def unary(self, method: str) -> grpc.aio.UnaryUnaryMultiCallable[bytes, bytes]:
        return self.channel.unary_unary(f"/{SERVICE}/{method}")

    def server_stream(self, method: str) -> grpc.aio.UnaryStreamMultiCallable[bytes, bytes]:
        return self.channel.unary_stream(f"/{SERVICE}/{method}")

    def client_stream(self, method: str) -> grpc.aio.StreamUnaryMultiCallable[bytes, bytes]:
        return self.channel.stream_unary(f"/{SERVICE}/{method}")

    def handled(self, method: str, code: str, kind: str = "unary") -> float:
        labels = {"grpc_type": kind, "grpc_service": SERVICE, "grpc_method": method}
        value = self.registry.get_sample_value(
            "grpc_server_handled_total", {**labels, "grpc_code": code}
        )
        return value or 0.0

    def timed(self, method: str, kind: str = "unary") -> float:
        labels = {"grpc_type": kind, "grpc_service": SERVICE, "grpc_method": method}
        return self.registry.get_sample_value("grpc_server_handling_seconds_count", labels) or 0.0

    async def eventually_handled(
        self, method: str, code: str, kind: str = "unary", *, calls: int = 1
    ) -> None:
        """The server records a call after the client has its answer: wait for it."""

        async def counted() -> bool:
            return self.handled(method, code, kind) >= calls

        await eventually_async(
            counted,
            timeout=PROMPTLY_S,
            interval=0.01,
            message=f"{method} counted {calls} times as {code}",
        )


@pytest.fixture
async def served() -> AsyncIterator[Served]:
    registry = CollectorRegistry()
    service = ProbeService()
    # Without a verifier: metrics and request decoding, as a server with LEDGER_INSECURE=1.
    wrapping = method_wrapping(GrpcServerMetrics.create(registry), None)
    server = grpc.aio.server(interceptors=[wrapping])
    server.add_generic_rpc_handlers((service.handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            yield Served(registry, service, channel)
    finally:
        await server.stop(0)


async def test_counts_and_times_every_call_by_method_and_code(served: Served) -> None:
    for _ in range(3):
        assert await served.unary("Echo")(b"hi") == b"hi"
    await served.eventually_handled("Echo", "OK", calls=3)
    assert served.timed("Echo") == 3


@pytest.mark.parametrize(
    ("method", "code"),
    [("Refuse", "FAILED_PRECONDITION"), ("Mark", "NOT_FOUND"), ("Crash", "UNKNOWN")],
)
async def test_records_the_status_the_caller_gets(served: Served, method: str, code: str) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await served.unary(method)(b"")
    assert failure.value.code().name == code
    await served.eventually_handled(method, code)
    assert served.timed(method) == 1


async def test_a_call_given_up_by_its_caller_is_cancelled(served: Served) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await served.unary("Hang")(b"", timeout=0.2)
    assert failure.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED
    await served.eventually_handled("Hang", "CANCELLED")


async def test_streams_are_timed_to_their_end(served: Served) -> None:
    replies = [r async for r in served.server_stream("Count")(b"3")]
    assert replies == [b"0", b"1", b"2"]
    await served.eventually_handled("Count", "OK", kind="server_stream")

    async def numbers() -> AsyncIterator[bytes]:
        for n in (b"1", b"2", b"3"):
            yield n

    assert await served.client_stream("Total")(numbers()) == b"6"
    await served.eventually_handled("Total", "OK", kind="client_stream")


async def test_a_stream_its_caller_leaves_is_closed_at_once(served: Served) -> None:
    call = served.server_stream("Forever")(b"")
    assert await call.read() == b"tick"
    call.cancel()
    await asyncio.wait_for(served.service.stream_closed.wait(), PROMPTLY_S)
    await served.eventually_handled("Forever", "CANCELLED", kind="server_stream")


async def test_unknown_methods_are_unimplemented_and_not_counted(served: Served) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as failure:
        await served.unary("Nope")(b"")
    assert failure.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert b"Nope" not in exposition(served.registry)[0]


def test_command_metrics_record_batches_commits_and_aborts() -> None:
    registry = CollectorRegistry()
    metrics = CommandMetrics.create(registry)
    for size in (1, 40, 40):
        metrics.observe_batch(size)
    metrics.observe_commit(0.004)
    metrics.count_aborted()
    sample = registry.get_sample_value
    assert sample("ledger_command_batch_size_count") == 3
    assert sample("ledger_command_batch_size_sum") == 81
    assert sample("ledger_command_batch_size_bucket", {"le": "50.0"}) == 3
    assert sample("ledger_command_batch_size_bucket", {"le": "20.0"}) == 1
    assert sample("ledger_command_commit_seconds_bucket", {"le": "0.005"}) == 1
    assert sample("ledger_command_batches_aborted_total") == 1


def test_projector_metrics_are_read_from_its_status_at_scrape_time() -> None:
    report: dict[str, Any] = {
        "topic": "account_events",
        "consuming": True,
        "partitions": {
            "0": {"checkpoint": 41, "high_watermark": 50, "lag": 8},
            "1": {"checkpoint": None, "high_watermark": None, "lag": None},
        },
        "events_applied": 1234,
        "dead_letters": 2,
        "batches": 17,
    }
    registry = CollectorRegistry()
    registry.register(ProjectorCollector(lambda: report))
    sample = registry.get_sample_value
    topic = {"topic": "account_events"}
    assert sample("ledger_projector_lag_offsets", {**topic, "partition": "0"}) == 8
    assert sample("ledger_projector_checkpoint_offset", {**topic, "partition": "0"}) == 41
    # Unknown is left out rather than reported as 0, which would read as "caught up".
    assert sample("ledger_projector_lag_offsets", {**topic, "partition": "1"}) is None
    assert sample("ledger_projector_events_applied_total", topic) == 1234
    assert sample("ledger_projector_dead_letters_total", topic) == 2
    assert sample("ledger_projector_batches_total", topic) == 17
    assert sample("ledger_projector_consuming", topic) == 1
    report["events_applied"] = 1300
    assert sample("ledger_projector_events_applied_total", topic) == 1300


def test_the_exporter_serves_the_registry_over_http() -> None:
    registry = CollectorRegistry()
    CommandMetrics.create(registry).observe_batch(7)
    exporter = start_metrics_exporter(
        "127.0.0.1:1", env={"LEDGER_METRICS_ADDR": "127.0.0.1:0"}, registry=registry
    )
    assert exporter is not None
    try:
        url = f"http://{exporter.address}/metrics"
        with urllib.request.urlopen(url, timeout=PROMPTLY_S) as reply:
            assert reply.status == 200
            assert reply.headers["Content-Type"].startswith("text/plain")
            body = reply.read().decode()
        assert "ledger_command_batch_size_sum 7.0" in body
    finally:
        exporter.close()


def test_the_exporter_uses_the_default_address_when_the_variable_is_unset() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    exporter = start_metrics_exporter(f"127.0.0.1:{free}", env={}, registry=CollectorRegistry())
    assert exporter is not None
    exporter.close()
    assert exporter.address == f"127.0.0.1:{free}"
    with pytest.raises(urllib.error.URLError):  # closed: nothing listens any more
        urllib.request.urlopen(f"http://127.0.0.1:{free}/metrics", timeout=PROMPTLY_S)


@pytest.mark.parametrize("address", ["9101", "localhost:http", "127.0.0.1:70000", "taken"])
def test_a_bad_or_taken_address_is_logged_and_the_process_goes_on(
    address: str, caplog: pytest.LogCaptureFixture
) -> None:
    with socket.socket() as holder:
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        if address == "taken":
            address = f"127.0.0.1:{holder.getsockname()[1]}"
        with caplog.at_level(logging.ERROR, logger="ledger.telemetry.exporter"):
            exporter = start_metrics_exporter(
                "127.0.0.1:0", env={"LEDGER_METRICS_ADDR": address}, registry=CollectorRegistry()
            )
    assert exporter is None
    assert "LEDGER_METRICS_ADDR" in caplog.text
