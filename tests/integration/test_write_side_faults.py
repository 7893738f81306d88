"""The write side on real Kafka when things go wrong: it refuses what it cannot trust at start,
and a broker that goes away is not a takeover (health follows, writes resume)."""

from __future__ import annotations

import asyncio
import time
import uuid
from dataclasses import replace
from pathlib import Path

import grpc
import pytest
from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewPartitions, NewTopic
from grpc_health.v1 import health_pb2, health_pb2_grpc

from command_server.snapshot_format import Manifest, decode, encode, manifest_key
from command_server.snapshot_topic import read_latest, snapshot_topic_name
from devstack.ledger_services import LedgerService
from devstack.stack import LocalStack
from ledger.command_ids import new_command_id
from ledger.partitioning import partition_of
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc
from tests.eventually import eventually_async
from tests.integration.test_command_server import read_events

pytestmark = pytest.mark.integration

SERVICE = "ledger.v1.CommandService"


def _id() -> str:
    return uuid.uuid4().hex


def _topic() -> str:
    return f"write_side_{_id()[:12]}"


def test_an_undecodable_record_of_an_owned_partition_stops_the_start(
    stack: LocalStack, tmp_path: Path
) -> None:
    topic = _topic()
    first = LedgerService.command_server(stack, tmp_path / "first", topic=topic)
    first.start()  # creates the topic
    first.stop()
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    producer.produce(topic, b"not avro", b"acc-1", partition=2)
    assert producer.flush(30) == 0

    service = LedgerService.command_server(stack, tmp_path / "second", topic=topic)

    assert service.run_to_exit(timeout=90) == 2
    log = service.log_text()
    assert "cannot start" in log
    assert f"topic '{topic}' partition 2 offset 0" in log


def test_a_topic_replicated_below_the_minimums_is_refused_naming_the_variables(
    stack: LocalStack, tmp_path: Path
) -> None:
    topic = _topic()
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    infinite = {"retention.ms": "-1", "retention.bytes": "-1"}
    admin.create_topics([NewTopic(topic, 6, config=infinite)])[topic].result(30)
    service = LedgerService.command_server(
        stack, tmp_path, topic=topic, extra_env={"LEDGER_MIN_INSYNC_REPLICAS": "2"}
    )

    assert service.run_to_exit(timeout=90) == 2
    log = service.log_text()
    assert "cannot start" in log
    assert "LEDGER_MIN_INSYNC_REPLICAS=2" in log


def test_a_replication_factor_above_the_brokers_refuses_the_start(
    stack: LocalStack, tmp_path: Path
) -> None:
    # One broker: a topic cannot be created with three replicas, nor would one with fewer do.
    service = LedgerService.command_server(
        stack, tmp_path, topic=_topic(), extra_env={"LEDGER_MIN_REPLICATION_FACTOR": "3"}
    )

    assert service.run_to_exit(timeout=90) == 2
    log = service.log_text()
    assert "cannot start" in log
    assert "LEDGER_MIN_REPLICATION_FACTOR" in log


async def test_a_partition_count_change_refuses_the_start_with_the_way_out(
    stack: LocalStack, tmp_path: Path
) -> None:
    topic = _topic()
    service = LedgerService.command_server(
        stack, tmp_path / "first", topic=topic, extra_env={"LEDGER_SNAPSHOT_EVERY_EVENTS": "0"}
    )
    service.start()
    async with grpc.aio.insecure_channel(service.address) as channel:
        client = pb_grpc.CommandServiceStub(channel)
        for n in range(40):
            await client.OpenAccount(
                pb.OpenAccountRequest(
                    command_id=new_command_id(), account_id=f"a{n}", currency="USD"
                )
            )
    service.stop()
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_partitions([NewPartitions(topic, 12)])[topic].result(30)

    again = LedgerService.command_server(
        stack, tmp_path / "second", topic=topic, extra_env={"LEDGER_SNAPSHOT_EVERY_EVENTS": "0"}
    )

    assert again.run_to_exit(timeout=90) == 2
    log = again.log_text()
    assert "now has 12 partitions" in log
    assert "LEDGER_TOPIC" in log


async def test_a_snapshot_that_disagrees_with_the_events_after_it_is_replayed_over(
    stack: LocalStack, tmp_path: Path
) -> None:
    topic = _topic()
    env = {"LEDGER_SNAPSHOT_EVERY_EVENTS": "1000000"}  # only the final one, at the clean stop
    service = LedgerService.command_server(stack, tmp_path / "first", topic=topic, extra_env=env)
    service.start()
    accounts = [f"acct-{n}" for n in range(12)]
    async with grpc.aio.insecure_channel(service.address) as channel:
        client = pb_grpc.CommandServiceStub(channel)
        for account in accounts:
            await client.OpenAccount(
                pb.OpenAccountRequest(
                    command_id=new_command_id(), account_id=account, currency="USD"
                )
            )
            await client.Deposit(
                pb.DepositRequest(command_id=new_command_id(), account_id=account, amount="2")
            )
    service.stop()
    # The snapshot of partition 0 is made to claim it covers only the first event: the events
    # after it then repeat what the snapshot already holds.
    latest = read_latest(stack.kafka_bootstrap, snapshot_topic_name(topic))
    manifest = decode(latest[manifest_key(0)])
    assert isinstance(manifest, Manifest)
    wrong = replace(manifest, next_offset=1)
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    producer.produce(snapshot_topic_name(topic), encode(wrong), manifest_key(0).encode())
    assert producer.flush(30) == 0

    again = LedgerService.command_server(stack, tmp_path / "second", topic=topic, extra_env=env)
    again.start()
    try:
        victim = next(a for a in accounts if partition_of(a, 6) == 0)
        async with grpc.aio.insecure_channel(again.address) as channel:
            client = pb_grpc.CommandServiceStub(channel)
            answer = await client.Deposit(
                pb.DepositRequest(command_id=new_command_id(), account_id=victim, amount="1")
            )
        assert answer.version == 3
    finally:
        again.stop()
    assert "snapshot discarded, partition replayed from offset 0: partition 0" in again.log_text()


async def _health(address: str) -> tuple[int, int]:
    async with grpc.aio.insecure_channel(address) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        whole = await stub.Check(health_pb2.HealthCheckRequest(service=""), timeout=2)
        named = await stub.Check(health_pb2.HealthCheckRequest(service=SERVICE), timeout=2)
        return whole.status, named.status


async def test_a_broker_that_goes_away_is_not_a_takeover(stack: LocalStack, tmp_path: Path) -> None:
    topic = _topic()
    service = LedgerService.command_server(stack, tmp_path, topic=topic)
    service.start()
    serving = health_pb2.HealthCheckResponse.SERVING
    not_serving = health_pb2.HealthCheckResponse.NOT_SERVING
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            client = pb_grpc.CommandServiceStub(channel)
            await client.OpenAccount(
                pb.OpenAccountRequest(command_id=new_command_id(), account_id="acc", currency="USD")
            )
            answers: list[grpc.StatusCode] = []
            done: set[str] = set()

            async def deposit_until_done(command_id: str, stop: float) -> None:
                """Retries one deposit with the same command id until it is acknowledged."""
                request = pb.DepositRequest(command_id=command_id, account_id="acc", amount="1")
                while time.monotonic() < stop:
                    try:
                        await client.Deposit(request, timeout=30)
                    except grpc.aio.AioRpcError as exc:
                        answers.append(exc.code())
                        await asyncio.sleep(0.2)
                        continue
                    answers.append(grpc.StatusCode.OK)
                    done.add(command_id)
                    return

            stop_at = time.monotonic() + 240
            first_wave = [
                asyncio.create_task(deposit_until_done(new_command_id(), stop_at)) for _ in range(5)
            ]
            await asyncio.to_thread(stack.kafka.kill)
            # Commands in flight while the broker is gone.
            second_wave = [
                asyncio.create_task(deposit_until_done(new_command_id(), stop_at)) for _ in range(5)
            ]
            await eventually_async(
                lambda: _health_is(service.address, (not_serving, not_serving)),
                timeout=30,
                message="health NOT_SERVING while the broker is down",
            )
            assert grpc.StatusCode.UNAVAILABLE in answers or len(done) == 5
            assert service.is_running(), "a broker crash is not a takeover"

            await asyncio.to_thread(stack.kafka.start)
            resumed = pb.DepositRequest(command_id=new_command_id(), account_id="acc", amount="1")

            async def accepted() -> bool:
                try:
                    await client.Deposit(resumed, timeout=5)
                except grpc.aio.AioRpcError:
                    return False
                return True

            await eventually_async(
                accepted, timeout=15, message="writes accepted within 15 s of the broker's return"
            )
            await eventually_async(
                lambda: _health_is(service.address, (serving, serving)),
                timeout=5,
                message="health SERVING once a transaction committed",
            )
            await asyncio.gather(*first_wave, *second_wave)
            assert len(done) == 10
            assert set(answers) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}
    finally:
        service.stop()
        if not stack.kafka.is_running():
            stack.kafka.start()
    assert "taken over" not in service.log_text()
    deposits = [e.command_id for e in read_events(stack, topic) if e.version > 1]
    assert sorted(deposits) == sorted({*deposits}), "no command applied twice"
    assert done <= set(deposits)


async def _health_is(address: str, wanted: tuple[int, int]) -> bool:
    try:
        return await _health(address) == wanted
    except grpc.aio.AioRpcError:
        return False


async def test_an_idle_instance_taken_over_stops_serving_and_exits_fenced(
    stack: LocalStack, tmp_path: Path
) -> None:
    """Nothing is sent to the first instance after the newcomer fenced it: its idle probe's
    transaction must find the fence (partition leaders alone say nothing of it)."""
    topic = _topic()
    first = LedgerService.command_server(stack, tmp_path / "first", topic=topic)
    newcomer = LedgerService.command_server(stack, tmp_path / "newcomer", topic=topic)
    serving = health_pb2.HealthCheckResponse.SERVING
    first.start()
    try:
        async with grpc.aio.insecure_channel(first.address) as channel:
            await pb_grpc.CommandServiceStub(channel).OpenAccount(
                pb.OpenAccountRequest(command_id=new_command_id(), account_id="acc", currency="USD")
            )
        assert await _health(first.address) == (serving, serving)
        await asyncio.to_thread(newcomer.start)
        # FENCE_CHECK_EVERY (10 s) of idleness, a probe a second, and the stop's grace.
        assert await asyncio.to_thread(first.wait_exit, 45) == 3
        async with grpc.aio.insecure_channel(newcomer.address) as channel:
            answer = await pb_grpc.CommandServiceStub(channel).Deposit(
                pb.DepositRequest(command_id=new_command_id(), account_id="acc", amount="1"),
                timeout=10,
            )
        assert answer.version == 2, "the newcomer still writes: the probe did not fence it back"
    finally:
        first.stop()
        newcomer.stop()
    log_text = first.log_text()
    assert "not serving: the event store cannot take writes now" in log_text
    assert "was taken over by another instance" in log_text
