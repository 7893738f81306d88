"""The command server against real Kafka and the registry, run as a real subprocess."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import grpc
import pytest
from confluent_kafka import Consumer
from confluent_kafka.admin import AdminClient, NewTopic
from confluent_kafka.schema_registry import SchemaRegistryClient
from confluent_kafka.schema_registry.avro import AvroDeserializer
from confluent_kafka.serialization import MessageField, SerializationContext

from devstack.ledger_services import LedgerService
from devstack.stack import LocalStack
from ledger.command_ids import new_command_id
from ledger.events.codec import EventCodec
from ledger.events.consuming import ReadToEnd, high_watermarks, read_to_end_config
from ledger.events.records import Event, MoneyWithdrawn
from ledger.events.schema_store import ConfluentSchemaStore
from ledger.v1 import commands_pb2 as pb
from ledger.v1 import commands_pb2_grpc as pb_grpc

pytestmark = pytest.mark.integration


def _id() -> str:
    return uuid.uuid4().hex


def read_log(stack: LocalStack, topic: str) -> list[tuple[bytes, bytes]]:
    """Every committed record of `topic` as (key, value)."""
    consumer = Consumer(read_to_end_config(stack.kafka_bootstrap, f"test-{_id()}"))
    try:
        reader = ReadToEnd(consumer, topic, {}, high_watermarks(consumer, topic))
        return [
            (msg.key() or b"", msg.value() or b"")
            for batch in reader.batches(time.monotonic() + 60)
            for msg in batch
        ]
    finally:
        consumer.close()


def read_events(stack: LocalStack, topic: str) -> list[Event]:
    codec = EventCodec(ConfluentSchemaStore(SchemaRegistryClient({"url": stack.registry_url})))
    return [codec.decode(value) for _, value in read_log(stack, topic)]


@pytest.fixture
def topic() -> str:
    return f"account_events_{_id()[:12]}"


@pytest.fixture
def command_server(stack: LocalStack, topic: str, tmp_path: Path) -> Iterator[LedgerService]:
    service = LedgerService.command_server(stack, tmp_path, topic=topic)
    service.start()
    yield service
    service.stop()


@pytest.fixture
async def client(command_server: LedgerService) -> AsyncIterator[pb_grpc.CommandServiceAsyncStub]:
    async with grpc.aio.insecure_channel(command_server.address) as channel:
        yield pb_grpc.CommandServiceStub(channel)


async def _open(client: pb_grpc.CommandServiceAsyncStub, currency: str = "USD") -> str:
    account = f"acc-{_id()[:8]}"
    await client.OpenAccount(
        pb.OpenAccountRequest(
            command_id=new_command_id(), account_id=account, currency=currency, owner="T"
        )
    )
    return account


async def test_each_command_succeeds_with_versions_and_tokens(
    client: pb_grpc.CommandServiceAsyncStub,
) -> None:
    a = f"a-{_id()[:8]}"
    b = f"b-{_id()[:8]}"
    opened = await client.OpenAccount(
        pb.OpenAccountRequest(
            command_id=new_command_id(), account_id=a, currency="EUR", owner="Ada"
        )
    )
    assert opened.version == 1
    assert opened.consistency_token
    await client.OpenAccount(
        pb.OpenAccountRequest(
            command_id=new_command_id(), account_id=b, currency="EUR", owner="Bob"
        )
    )
    deposited = await client.Deposit(
        pb.DepositRequest(command_id=new_command_id(), account_id=a, amount="100.50")
    )
    assert deposited.version == 2
    withdrawn = await client.Withdraw(
        pb.WithdrawRequest(
            command_id=new_command_id(), account_id=a, amount="0.50", expected_version=2
        )
    )
    assert withdrawn.version == 3
    transferred = await client.Transfer(
        pb.TransferRequest(
            command_id=new_command_id(), from_account_id=a, to_account_id=b, amount="100"
        )
    )
    assert transferred.version == 4
    await client.Withdraw(
        pb.WithdrawRequest(command_id=new_command_id(), account_id=b, amount="100.00")
    )
    closed = await client.CloseAccount(
        pb.CloseAccountRequest(command_id=new_command_id(), account_id=a)
    )
    assert closed.version == 5


@pytest.mark.parametrize(
    ("request_factory", "code"),
    [
        ("open_bad_id", grpc.StatusCode.INVALID_ARGUMENT),
        ("open_bad_currency", grpc.StatusCode.INVALID_ARGUMENT),
        ("open_missing_command_id", grpc.StatusCode.INVALID_ARGUMENT),
        ("open_existing", grpc.StatusCode.ALREADY_EXISTS),
        ("deposit_unknown", grpc.StatusCode.NOT_FOUND),
        ("deposit_bad_amount", grpc.StatusCode.INVALID_ARGUMENT),
        ("deposit_too_many_decimals", grpc.StatusCode.INVALID_ARGUMENT),
        ("deposit_negative", grpc.StatusCode.INVALID_ARGUMENT),
        ("deposit_wrong_version", grpc.StatusCode.ABORTED),
        ("withdraw_overdraft", grpc.StatusCode.FAILED_PRECONDITION),
        ("withdraw_unknown", grpc.StatusCode.NOT_FOUND),
        ("transfer_to_self", grpc.StatusCode.INVALID_ARGUMENT),
        ("transfer_currency_mismatch", grpc.StatusCode.FAILED_PRECONDITION),
        ("transfer_unknown_destination", grpc.StatusCode.NOT_FOUND),
        ("close_with_balance", grpc.StatusCode.FAILED_PRECONDITION),
        ("deposit_to_closed", grpc.StatusCode.FAILED_PRECONDITION),
        ("command_id_reused", grpc.StatusCode.ALREADY_EXISTS),
    ],
)
async def test_each_error_has_its_status_code(
    client: pb_grpc.CommandServiceAsyncStub, request_factory: str, code: grpc.StatusCode
) -> None:
    funded = await _open(client)
    await client.Deposit(
        pb.DepositRequest(command_id=new_command_id(), account_id=funded, amount="10")
    )
    calls: dict[str, Callable[[], Awaitable[object]]] = {
        "open_bad_id": lambda: client.OpenAccount(
            pb.OpenAccountRequest(
                command_id=new_command_id(), account_id="no spaces", currency="USD"
            )
        ),
        "open_bad_currency": lambda: client.OpenAccount(
            pb.OpenAccountRequest(
                command_id=new_command_id(), account_id=f"x{_id()[:6]}", currency="XXQ"
            )
        ),
        "open_missing_command_id": lambda: client.OpenAccount(
            pb.OpenAccountRequest(account_id=f"x{_id()[:6]}", currency="USD")
        ),
        "open_existing": lambda: client.OpenAccount(
            pb.OpenAccountRequest(command_id=new_command_id(), account_id=funded, currency="USD")
        ),
        "deposit_unknown": lambda: client.Deposit(
            pb.DepositRequest(command_id=new_command_id(), account_id="nobody", amount="1")
        ),
        "deposit_bad_amount": lambda: client.Deposit(
            pb.DepositRequest(command_id=new_command_id(), account_id=funded, amount="1e3")
        ),
        "deposit_too_many_decimals": lambda: client.Deposit(
            pb.DepositRequest(command_id=new_command_id(), account_id=funded, amount="1.001")
        ),
        "deposit_negative": lambda: client.Deposit(
            pb.DepositRequest(command_id=new_command_id(), account_id=funded, amount="-1")
        ),
        "deposit_wrong_version": lambda: client.Deposit(
            pb.DepositRequest(
                command_id=new_command_id(), account_id=funded, amount="1", expected_version=7
            )
        ),
        "withdraw_overdraft": lambda: client.Withdraw(
            pb.WithdrawRequest(command_id=new_command_id(), account_id=funded, amount="10.01")
        ),
        "withdraw_unknown": lambda: client.Withdraw(
            pb.WithdrawRequest(command_id=new_command_id(), account_id="nobody", amount="1")
        ),
        "transfer_to_self": lambda: client.Transfer(
            pb.TransferRequest(
                command_id=new_command_id(),
                from_account_id=funded,
                to_account_id=funded,
                amount="1",
            )
        ),
        "transfer_unknown_destination": lambda: client.Transfer(
            pb.TransferRequest(
                command_id=new_command_id(),
                from_account_id=funded,
                to_account_id="nobody",
                amount="1",
            )
        ),
        "close_with_balance": lambda: client.CloseAccount(
            pb.CloseAccountRequest(command_id=new_command_id(), account_id=funded)
        ),
    }
    call: Awaitable[object]
    if request_factory == "transfer_currency_mismatch":
        other = await _open(client, currency="JPY")
        call = client.Transfer(
            pb.TransferRequest(
                command_id=new_command_id(), from_account_id=funded, to_account_id=other, amount="1"
            )
        )
    elif request_factory == "deposit_to_closed":
        empty = await _open(client)
        await client.CloseAccount(
            pb.CloseAccountRequest(command_id=new_command_id(), account_id=empty)
        )
        call = client.Deposit(
            pb.DepositRequest(command_id=new_command_id(), account_id=empty, amount="1")
        )
    elif request_factory == "command_id_reused":
        reused = new_command_id()
        await client.Deposit(pb.DepositRequest(command_id=reused, account_id=funded, amount="1"))
        call = client.Deposit(pb.DepositRequest(command_id=reused, account_id=funded, amount="2"))
    else:
        call = calls[request_factory]()
    with pytest.raises(grpc.aio.AioRpcError) as info:
        await call
    assert info.value.code() == code, info.value.details()
    assert info.value.details(), "every refusal explains itself"


async def test_racing_withdrawals_never_overdraw(
    client: pb_grpc.CommandServiceAsyncStub, stack: LocalStack, topic: str
) -> None:
    account = await _open(client)
    await client.Deposit(
        pb.DepositRequest(command_id=new_command_id(), account_id=account, amount="100.00")
    )

    async def withdraw() -> grpc.StatusCode:
        try:
            await client.Withdraw(
                pb.WithdrawRequest(command_id=new_command_id(), account_id=account, amount="3.00")
            )
        except grpc.aio.AioRpcError as exc:
            return exc.code()
        return grpc.StatusCode.OK

    results = await asyncio.gather(*(withdraw() for _ in range(50)))
    # 33 x 3.00 = 99.00 of 100.00; every other one is refused for lack of funds.
    assert results.count(grpc.StatusCode.OK) == 33
    assert results.count(grpc.StatusCode.FAILED_PRECONDITION) == 17

    events = [e for e in read_events(stack, topic) if e.account_id == account]
    withdrawn = [e for e in events if isinstance(e, MoneyWithdrawn)]
    assert len(withdrawn) == 33
    assert [e.version for e in events] == list(range(1, len(events) + 1))
    assert 10000 - sum(e.amount for e in withdrawn) == 100
    balances = [e.balance_after for e in events]
    assert balances[-1] == 100
    assert all(b is not None and b >= 0 for b in balances)


async def test_concurrent_retries_append_once_and_survive_a_restart(
    command_server: LedgerService, stack: LocalStack, topic: str
) -> None:
    command_id = new_command_id()
    async with grpc.aio.insecure_channel(command_server.address) as channel:
        client = pb_grpc.CommandServiceStub(channel)
        account = await _open(client)
        deposit = pb.DepositRequest(command_id=command_id, account_id=account, amount="5.00")
        answers = await asyncio.gather(*(client.Deposit(deposit) for _ in range(10)))
    assert len({(a.version, a.consistency_token) for a in answers}) == 1
    assert sum(1 for e in read_events(stack, topic) if e.command_id == command_id) == 1

    command_server.stop()
    command_server.start()
    async with grpc.aio.insecure_channel(command_server.address) as channel:
        client = pb_grpc.CommandServiceStub(channel)
        again = await client.Deposit(deposit)
        assert (again.version, again.consistency_token) == (
            answers[0].version,
            answers[0].consistency_token,
        )
        # The state was rebuilt: the next change lands on the next version.
        after = await client.Deposit(
            pb.DepositRequest(command_id=new_command_id(), account_id=account, amount="1.00")
        )
        assert after.version == answers[0].version + 1
    assert sum(1 for e in read_events(stack, topic) if e.command_id == command_id) == 1


async def test_a_second_instance_fences_the_first(
    command_server: LedgerService, stack: LocalStack, topic: str, tmp_path: Path
) -> None:
    async with grpc.aio.insecure_channel(command_server.address) as channel:
        first = pb_grpc.CommandServiceStub(channel)
        account = await _open(first)
        successor = LedgerService.command_server(stack, tmp_path / "second", topic=topic)
        successor.start()
        try:
            zombie_command = new_command_id()
            with pytest.raises(grpc.aio.AioRpcError) as info:
                await first.Deposit(
                    pb.DepositRequest(command_id=zombie_command, account_id=account, amount="1")
                )
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert command_server.wait_exit(30) == 3
            assert all(e.command_id != zombie_command for e in read_events(stack, topic))
            async with grpc.aio.insecure_channel(successor.address) as channel2:
                second = pb_grpc.CommandServiceStub(channel2)
                answer = await second.Deposit(
                    pb.DepositRequest(command_id=zombie_command, account_id=account, amount="1")
                )
                assert answer.version == 2
        finally:
            successor.stop()


async def test_stock_confluent_deserializer_reads_our_events(
    client: pb_grpc.CommandServiceAsyncStub, stack: LocalStack, topic: str
) -> None:
    account = await _open(client)
    deserializer = AvroDeserializer(SchemaRegistryClient({"url": stack.registry_url}))
    _, value = next(r for r in read_log(stack, topic) if r[0] == account.encode())
    record = deserializer(value, SerializationContext(topic, MessageField.VALUE))
    assert record is not None
    assert record["account_id"] == account
    assert record["version"] == 1


def test_refuses_a_topic_that_could_lose_events(stack: LocalStack, tmp_path: Path) -> None:
    topic = f"finite_{_id()[:8]}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    admin.create_topics([NewTopic(topic, 1, config={"retention.ms": "86400000"})])[topic].result()
    service = LedgerService.command_server(stack, tmp_path, topic=topic)
    code = service.run_to_exit(timeout=60)
    assert code == 2
    assert "retention.ms=86400000" in service.log_text()


async def test_a_shard_without_peers_refuses_another_shards_commands_naming_the_owner(
    stack: LocalStack, topic: str, tmp_path: Path
) -> None:
    service = LedgerService.command_server(
        stack,
        tmp_path,
        topic=topic,
        extra_env={"LEDGER_SHARD_INDEX": "0", "LEDGER_SHARD_COUNT": "2"},
    )
    service.start()
    try:
        async with grpc.aio.insecure_channel(service.address) as channel:
            client = pb_grpc.CommandServiceStub(channel)
            refusals: list[str] = []
            for n in range(20):
                try:
                    await client.OpenAccount(
                        pb.OpenAccountRequest(
                            command_id=new_command_id(), account_id=f"s{n}", currency="USD"
                        )
                    )
                except grpc.aio.AioRpcError as exc:
                    refusals.append(f"{exc.code().name}: {exc.details()}")
            assert 0 < len(refusals) < 20
            # Retrying here cannot help (no peers to forward to): not UNAVAILABLE.
            assert all(
                r.startswith("FAILED_PRECONDITION") and "shard 1 of 2" in r for r in refusals
            )
    finally:
        service.stop()
