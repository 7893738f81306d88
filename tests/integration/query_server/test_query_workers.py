"""The query server with LEDGER_QUERY_WORKERS > 1: worker processes sharing one port.

The kernel hands each new connection to one worker, so the tests open many channels and check,
from /proc, that every worker owns some of them: whatever then passes through all the channels
has passed through every worker.
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from devstack.ports import LOOPBACK, free_port
from devstack.process import alive, child_pids, clean_environment
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.eventually import eventually, eventually_async
from tests.integration.query_server.read_model_writer import (
    PROMPTLY_S,
    T0,
    ReadModelWriter,
    unique_id,
)

pytestmark = pytest.mark.integration

CHANNELS = 16


class Supervised:
    """`python -m query_server` with two workers, as a child of the test."""

    def __init__(
        self, database_url: str, topic: str, log_file: Path, *, address: str | None = None
    ) -> None:
        self.address = address or f"{LOOPBACK}:{free_port()}"
        self.metrics = f"{LOOPBACK}:{free_port()}"
        self.log_file = log_file
        env = clean_environment(
            {
                "LEDGER_DATABASE_URL": database_url,
                "LEDGER_QUERY_ADDR": self.address,
                "LEDGER_METRICS_ADDR": self.metrics,
                "LEDGER_TOPIC": topic,
                "LEDGER_QUERY_WORKERS": "2",
                "LEDGER_INSECURE": "1",  # plaintext on loopback, as the other tests' servers
            }
        )
        with log_file.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "query_server"],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    @property
    def port(self) -> int:
        return int(self.address.rpartition(":")[2])

    def workers(self) -> set[int]:
        return child_pids(self.process.pid)

    def wait_for_workers(self, count: int = 2) -> set[int]:
        """The workers' pids, once `count` of them listen on the port."""

        def listening() -> set[int]:
            workers = self.workers()
            assert len(workers) == count, f"workers {workers}"
            assert all(_serving_port(pid, self.port) for pid in workers), f"workers {workers}"
            return workers

        return eventually(
            listening,
            timeout=30,
            interval=0.1,
            message=lambda: f"{count} workers on the port; log:\n{self.log_tail()}",
        )

    def log_tail(self) -> str:
        return self.log_file.read_text(errors="replace")[-4000:]

    def kill_all(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait()


def _socket_inodes(pid: int) -> set[int]:
    inodes: set[int] = set()
    try:
        fds = list(Path(f"/proc/{pid}/fd").iterdir())
    except OSError:
        return inodes
    for fd in fds:
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(int(target[8:-1]))
    return inodes


def _tcp_sockets(port: int, state: str) -> set[int]:
    """Inodes of the sockets on local `port` in `state` (0A listening, 01 established)."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as lines:
            next(lines)
            for line in lines:
                fields = line.split()
                if int(fields[1].rsplit(":", 1)[1], 16) == port and fields[3] == state:
                    inodes.add(int(fields[9]))
    return inodes


def _serving_port(pid: int, port: int) -> bool:
    return bool(_socket_inodes(pid) & _tcp_sockets(port, "0A"))


def _connections_per_worker(server: Supervised) -> dict[int, int]:
    established = _tcp_sockets(server.port, "01")
    return {pid: len(_socket_inodes(pid) & established) for pid in server.workers()}


@pytest.fixture
def server(database_url: str, topic: str, tmp_path: Path) -> Iterator[Supervised]:
    supervised = Supervised(database_url, topic, tmp_path / "query-server.log")
    try:
        supervised.wait_for_workers()
        yield supervised
    finally:
        supervised.kill_all()


async def _serving_channels(server: Supervised) -> list[grpc.aio.Channel]:
    """CHANNELS channels, each with its own connection, spread over the workers by the kernel;
    each connected and answering SERVING."""
    channels = [
        # Without this option, channels with the same target could share one connection.
        grpc.aio.insecure_channel(server.address, options=[("grpc.use_local_subchannel_pool", 1)])
        for _ in range(CHANNELS)
    ]
    for channel in channels:

        async def serving(channel: grpc.aio.Channel = channel) -> bool:
            reply = await health_pb2_grpc.HealthStub(channel).Check(
                health_pb2.HealthCheckRequest(service="ledger.v1.QueryService"), timeout=5
            )
            return bool(reply.status == health_pb2.HealthCheckResponse.SERVING)

        await eventually_async(serving, timeout=PROMPTLY_S, message="every worker SERVING")
    return channels


async def _close(channels: list[grpc.aio.Channel]) -> None:
    for channel in channels:
        await channel.close()


def _assert_every_worker_has_connections(server: Supervised) -> None:
    per_worker = _connections_per_worker(server)
    assert len(per_worker) == 2
    assert sum(per_worker.values()) >= CHANNELS
    assert all(count > 0 for count in per_worker.values()), per_worker


async def test_every_worker_answers_and_waits_for_tokens(
    server: Supervised, writer: ReadModelWriter
) -> None:
    account_id = unique_id("workers")
    await writer.open(account_id, currency="EUR", owner="Both")
    channels = await _serving_channels(server)
    try:
        _assert_every_worker_has_connections(server)
        stubs = [pb_grpc.QueryServiceStub(channel) for channel in channels]
        for stub in stubs:
            reply = await stub.GetAccount(pb.GetAccountRequest(account_id=account_id), timeout=5)
            assert reply.account.owner == "Both"

        # Every channel asks for a deposit not yet applied; one batch must wake every worker.
        token = writer.token_of_next(0).encode()
        waiting = [
            asyncio.ensure_future(
                stub.GetAccount(
                    pb.GetAccountRequest(account_id=account_id, consistency_token=token),
                    timeout=PROMPTLY_S,
                )
            )
            for stub in stubs
        ]
        watches = [
            stub.WatchAccount(pb.WatchAccountRequest(account_id=account_id), timeout=PROMPTLY_S)
            for stub in stubs
        ]
        for watch in watches:
            first = await watch.read()
            assert isinstance(first, pb.WatchAccountResponse)
        await asyncio.sleep(0.2)
        assert not any(call.done() for call in waiting), "answered before the read model had it"
        version = await writer.move(account_id, "DEPOSIT", "7.25", at=T0)
        for reply in await asyncio.gather(*waiting):
            assert (reply.account.balance, reply.account.version) == ("7.25", version)
        for watch in watches:
            update = await watch.read()
            assert isinstance(update, pb.WatchAccountResponse)
            assert update.account.version == version
            watch.cancel()

        # The supervisor exports the sum of the workers' metrics.
        def handled_ok() -> float:
            with urllib.request.urlopen(f"http://{server.metrics}/metrics", timeout=5) as reply:
                text = reply.read().decode()
            return sum(
                float(line.rsplit(" ", 1)[1])
                for line in text.splitlines()
                if line.startswith("grpc_server_handled_total{")
                and 'grpc_method="GetAccount"' in line
                and 'grpc_code="OK"' in line
            )

        assert handled_ok() >= 2 * CHANNELS
    finally:
        await _close(channels)


async def test_a_killed_worker_is_replaced_and_the_port_stays_served(
    server: Supervised, writer: ReadModelWriter
) -> None:
    account_id = unique_id("killed")
    await writer.open(account_id)
    before = server.workers()
    victim = min(before)
    os.kill(victim, signal.SIGKILL)
    # Meanwhile the other worker answers new connections. One that the kernel had queued on the
    # victim's socket is reset; wait_for_ready is how a client rides that out (reconnecting).
    channels = [grpc.aio.insecure_channel(server.address) for _ in range(4)]
    try:
        for channel in channels:
            reply = await pb_grpc.QueryServiceStub(channel).GetAccount(
                pb.GetAccountRequest(account_id=account_id),
                timeout=PROMPTLY_S,
                wait_for_ready=True,
            )
            assert reply.account.account_id == account_id
    finally:
        await _close(channels)

    def replaced() -> set[int]:
        workers = server.wait_for_workers(2)
        assert victim not in workers, f"worker {victim} still there; log:\n{server.log_tail()}"
        return workers

    after = eventually(replaced, timeout=30, interval=0.1)
    assert len(after & before) == 1
    assert "restarting it" in server.log_tail()
    channels = await _serving_channels(server)
    try:
        _assert_every_worker_has_connections(server)
    finally:
        await _close(channels)


def test_sigterm_stops_every_worker(server: Supervised) -> None:
    workers = server.workers()
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(30) == 0
    assert not alive(workers), server.log_tail()
    with socket.socket() as probe:
        assert probe.connect_ex((LOOPBACK, server.port)) != 0, "the port is still served"


def test_workers_stop_when_the_supervisor_dies(server: Supervised) -> None:
    workers = server.workers()
    server.process.kill()  # the supervisor alone, not its process group
    server.process.wait()
    eventually(
        lambda: not alive(workers),
        timeout=20,
        interval=0.1,
        message=lambda: f"the orphaned workers to stop; log:\n{server.log_tail()}",
    )
    assert "the supervisor is gone" in server.log_tail()


def test_workers_that_keep_failing_stop_the_server(
    database_url: str, topic: str, tmp_path: Path
) -> None:
    # A plain socket without SO_REUSEPORT holds the port: no worker can bind it.
    with socket.socket() as squatter:
        squatter.bind((LOOPBACK, 0))
        squatter.listen()
        address = f"{LOOPBACK}:{squatter.getsockname()[1]}"
        supervised = Supervised(database_url, topic, tmp_path / "query-server.log", address=address)
        try:
            assert supervised.process.wait(90) == 1
        finally:
            supervised.kill_all()
    assert "stopping all workers" in supervised.log_tail()
