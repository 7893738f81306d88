"""The query server as a process: health, reflection, projection status, and how it
answers when its database is slow, gone or not there yet, or when it stops."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import asyncpg  # type: ignore[import-untyped, unused-ignore]
import grpc
import pytest
from confluent_kafka import Producer
from google.protobuf.descriptor_pb2 import FileDescriptorProto
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection_pb2, reflection_pb2_grpc

from devstack.databases import drop_database
from devstack.ledger_services import LedgerService
from devstack.ports import free_port
from devstack.stack import LocalStack
from ledger.consistency import ConsistencyToken
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.eventually import eventually_async
from tests.integration.query_server.read_model_writer import (
    PROMPTLY_S,
    T0,
    ReadModelWriter,
    create_read_model_database,
    failure_of,
    next_update,
    unique_id,
)

pytestmark = pytest.mark.integration


async def test_serves_health_and_documented_reflection(query_server: LedgerService) -> None:
    async with grpc.aio.insecure_channel(query_server.address) as channel:
        health = await health_pb2_grpc.HealthStub(channel).Check(
            health_pb2.HealthCheckRequest(service="ledger.v1.QueryService")
        )
        assert health.status == health_pb2.HealthCheckResponse.SERVING
        reflection = reflection_pb2_grpc.ServerReflectionStub(channel)
        request = reflection_pb2.ServerReflectionRequest(
            file_containing_symbol="ledger.v1.QueryService"
        )
        async for answer in reflection.ServerReflectionInfo(iter([request])):
            files = answer.file_descriptor_response.file_descriptor_proto
            protos = [FileDescriptorProto.FromString(data) for data in files]
            comments = [
                location.leading_comments
                for proto in protos
                for location in proto.source_code_info.location
            ]
            assert any("Answers questions about accounts" in text for text in comments)
            break


async def test_projection_status_reports_checkpoints_and_lag(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter, stack: LocalStack, topic: str
) -> None:
    producer = Producer({"bootstrap.servers": stack.kafka_bootstrap})
    for _ in range(3):
        producer.produce(topic, b"x", partition=2)
    assert producer.flush(10) == 0
    await writer.touch(0)

    async def with_watermarks() -> pb.GetProjectionStatusResponse:
        status = await client.GetProjectionStatus(pb.GetProjectionStatusRequest())
        watermarked = [p for p in status.partitions if p.HasField("high_watermark")]
        assert any(p.partition == 2 for p in watermarked), f"no watermarks observed: {status}"
        return status

    status = await eventually_async(with_watermarks, timeout=PROMPTLY_S)
    by_partition = {p.partition: p for p in status.partitions}
    assert [p.partition for p in status.partitions] == [0, 1, 2]
    for partition in status.partitions:
        assert partition.checkpoint_offset == writer.offsets.get(partition.partition, -1)
        assert partition.lag == max(0, partition.high_watermark - (partition.checkpoint_offset + 1))
    assert by_partition[2].high_watermark == 3
    assert by_partition[0].HasField("updated_at")
    assert not by_partition[2].HasField("updated_at") or 2 in writer.offsets
    assert ConsistencyToken.decode(status.freshness.consistency_token) == ConsistencyToken(
        writer.offsets
    )


async def test_a_get_account_held_up_by_the_database_is_unavailable_not_stuck(
    client: pb_grpc.QueryServiceAsyncStub, writer: ReadModelWriter, database_url: str
) -> None:
    account_id = unique_id("held")
    await writer.open(account_id, currency="EUR", owner="held", at=T0)
    blocker = await asyncpg.connect(database_url)
    try:
        async with blocker.transaction():
            # Reads of accounts wait for this lock: the statement runs past its timeout.
            await blocker.execute("LOCK TABLE ledger.accounts IN ACCESS EXCLUSIVE MODE")
            started = time.monotonic()
            code, details = await failure_of(
                client.GetAccount(pb.GetAccountRequest(account_id=account_id), timeout=20)
            )
            assert code == grpc.StatusCode.UNAVAILABLE
            assert "did not answer in time" in details
            assert time.monotonic() - started < 15, "waited for the pool's command timeout"
    finally:
        await blocker.close()
    reply = await client.GetAccount(pb.GetAccountRequest(account_id=account_id))
    assert reply.account.owner == "held"


async def test_stopping_ends_watches_promptly_with_unavailable(
    stack: LocalStack,
    database_url: str,
    topic: str,
    writer: ReadModelWriter,
    tmp_path: Path,
) -> None:
    account = unique_id("stop")
    await writer.open(account)
    service = LedgerService.query_server(stack, tmp_path, topic=topic, database_url=database_url)
    service.start()
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            stream = pb_grpc.QueryServiceStub(channel).WatchAccount(
                pb.WatchAccountRequest(account_id=account)
            )
            await next_update(stream)
            await asyncio.to_thread(service.stop)
            code, details = await failure_of(asyncio.wait_for(stream.read(), PROMPTLY_S))
            assert code == grpc.StatusCode.UNAVAILABLE
            assert "shutting down" in details
    finally:
        service.stop()


async def test_an_unreachable_read_model_is_unavailable(
    stack: LocalStack, topic: str, tmp_path: Path
) -> None:
    url = await create_read_model_database(stack, migrate=True)
    unreachable_kafka = f"127.0.0.1:{free_port()}"
    service = LedgerService.query_server(
        stack,
        tmp_path,
        topic=topic,
        database_url=url,
        extra_env={"LEDGER_KAFKA_BOOTSTRAP_SERVERS": unreachable_kafka},
    )
    service.start()
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            client = pb_grpc.QueryServiceStub(channel)
            status = await client.GetProjectionStatus(pb.GetProjectionStatusRequest())
            assert all(not p.HasField("lag") for p in status.partitions), "lag is unknown"
            await drop_database(stack, url)
            code, details = await failure_of(
                client.GetAccount(pb.GetAccountRequest(account_id="a"))
            )
            assert code == grpc.StatusCode.UNAVAILABLE
            assert "read model" in details
            health = health_pb2_grpc.HealthStub(channel)

            async def not_serving() -> bool:
                reply = await health.Check(health_pb2.HealthCheckRequest())
                return bool(reply.status != health_pb2.HealthCheckResponse.SERVING)

            await eventually_async(
                not_serving, timeout=PROMPTLY_S, message="NOT_SERVING without its database"
            )
    finally:
        service.stop()
        await drop_database(stack, url)


async def test_answers_unavailable_until_the_database_is_reachable(
    stack: LocalStack, tmp_path: Path
) -> None:
    service = LedgerService.query_server(
        stack, tmp_path, database_url=f"postgresql://postgres@127.0.0.1:{free_port()}/ledger"
    )
    service.launch()
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            client = pb_grpc.QueryServiceStub(channel)

            async def still_connecting() -> bool:
                code, details = await failure_of(
                    client.GetAccount(pb.GetAccountRequest(account_id="a"), timeout=2)
                )
                if code != grpc.StatusCode.UNAVAILABLE:
                    pytest.fail(f"{code}: {details}")  # wrong, not merely early: fail at once
                assert "still connecting to the read model" in details, details
                return True

            await eventually_async(still_connecting, timeout=PROMPTLY_S)
    finally:
        service.stop()
    assert service.wait_exit(10) == 0
