"""Three command-server shards behave as one ledger: every kind of command, each sent to a
randomly chosen shard, is answered as one shard answers it, and the log holds each event once.
A retry entering by another shard is answered from the original. Over TLS with tokens, as
`make run` serves, so the forwarded calls' credentials and the peers' certificates are real.
"""

from __future__ import annotations

import asyncio
import os
import random
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from contextlib import ExitStack
from dataclasses import dataclass
from typing import TYPE_CHECKING

import grpc
import pytest
from confluent_kafka.admin import AdminClient

from command_server.topic import ensure_event_topic
from devstack.credentials import local_credentials
from devstack.ledger_services import LedgerService, running
from devstack.ports import LOOPBACK, free_port
from devstack.stack import LocalStack
from fault_drill.event_log import read_log
from ledger.auth.local import LocalCredentials
from ledger.command_ids import new_command_id
from ledger.consistency import ConsistencyToken
from ledger.partitioning import partition_of
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import commands_pb2_grpc as cmd_grpc
from tests.e2e.shard_script import PARTITIONS, SHARDS, Caller, accounts, play, shard_of
from tests.eventually import eventually_async

if TYPE_CHECKING:
    from tests.e2e.shard_script import Stub

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Ledgers:
    one: LedgerService
    shards: list[LedgerService]
    one_topic: str
    shards_topic: str
    credentials: LocalCredentials


def _topic(stack: LocalStack, name: str) -> str:
    topic = f"{name}_{uuid.uuid4().hex[:8]}"
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    ensure_event_topic(admin, topic, PARTITIONS)
    return topic


def _metrics(index: int) -> dict[str, str]:
    return {"LEDGER_METRICS_ADDR": f"{LOOPBACK}:{free_port()}"}


@pytest.fixture(scope="module")
def ledgers(stack: LocalStack, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Ledgers]:
    data_dir = tmp_path_factory.mktemp("shards")
    credentials = local_credentials(data_dir)
    one_topic, shards_topic = _topic(stack, "one_shard"), _topic(stack, "three_shards")
    one = LedgerService.command_server(
        stack, data_dir, topic=one_topic, secure=credentials, extra_env=_metrics(0)
    )
    addresses = [f"{LOOPBACK}:{free_port()}" for _ in range(SHARDS)]
    shards = LedgerService.command_shards(
        stack, data_dir, addresses, topic=shards_topic, secure=credentials, extra_env=_metrics
    )
    with ExitStack() as started:
        started.enter_context(running([one, *shards]))
        yield Ledgers(one, shards, one_topic, shards_topic, credentials)


@pytest.fixture
async def stubs(ledgers: Ledgers) -> AsyncIterator[dict[str, list[Stub]]]:
    """Stubs by kind: "one" (the one shard) and "shards" (shard i at i) with the writer's
    token, "admin-one" and "admin-shards" likewise with the admin's."""
    servers = {"one": [ledgers.one], "shards": ledgers.shards}
    channels: dict[str, list[grpc.aio.Channel]] = {}
    for role, prefix in (("writer", ""), ("admin", "admin-")):
        token = ledgers.credentials.token(role)
        for kind, services in servers.items():
            channels[prefix + kind] = [service.channel(token) for service in services]
    yield {
        kind: [cmd_grpc.CommandServiceStub(c) for c in found] for kind, found in channels.items()
    }
    for found in channels.values():
        for channel in found:
            await channel.close()


def _seed() -> int:
    seed = int(os.environ.get("LEDGER_SHARDS_SEED") or random.randrange(2**32))
    print(f"shard choice seed {seed} (LEDGER_SHARDS_SEED={seed} repeats it)")
    return seed


def _events_per_command(stack: LocalStack, topic: str) -> tuple[Counter[str], Counter[str]]:
    records = read_log(stack.kafka_bootstrap, stack.registry_url, topic)
    assert all(r.event is not None for r in records), [r.error for r in records if r.error]
    events = [r.event for r in records if r.event is not None]
    return Counter(e.command_id for e in events), Counter(e.event_id for e in events)


async def test_every_command_through_a_random_shard_answers_as_on_one_shard_once(
    stack: LocalStack, ledgers: Ledgers, stubs: dict[str, list[Stub]]
) -> None:
    seed = _seed()
    chooser = random.Random(seed)
    one = Caller(stubs["one"], stubs["admin-one"], lambda: 0, accounts(f"one-{seed}"))
    three = Caller(
        stubs["shards"],
        stubs["admin-shards"],
        lambda: chooser.randrange(SHARDS),
        accounts(f"three-{seed}"),
    )
    on_one, on_three = await play(one), await play(three)

    assert on_three == on_one, seed
    # Refusals included: funds, unknown account, reopening; the batch's closed account and id.
    codes = [answer[1] for answer in on_one]
    refused = ["FAILED_PRECONDITION", "NOT_FOUND", "ALREADY_EXISTS"]
    assert codes == ["OK"] * 8 + refused + ["OK"] * 3 + [True, True], on_one
    assert [result[0] for result in on_one[-2][2]] == [0, 0, 9, 3, 0], on_one
    (retried,) = [tokens for tokens in three.tokens.values() if len(tokens) > 1]
    assert retried[0] == retried[1], three.tokens
    # The spread batch's token covers every shard's writes: A's and C's deposits, B's withdrawal.
    merged = ConsistencyToken.decode(three.batch_tokens[0]).positions
    roles = three.roles
    assert {partition_of(roles[r], PARTITIONS) for r in "ABC"} <= set(merged), merged
    logged, event_ids = _events_per_command(stack, ledgers.shards_topic)
    assert dict(logged) == three.succeeded, seed
    assert set(event_ids.values()) == {1}


async def _refusal(
    stub: Stub, request: cmd.DepositRequest, **kwargs: object
) -> grpc.aio.AioRpcError:
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stub.Deposit(request, timeout=30, **kwargs)  # type: ignore[arg-type]
    return refused.value


async def test_a_forwarded_command_at_a_shard_not_owning_it_names_both_configurations(
    stubs: dict[str, list[Stub]],
) -> None:
    account = accounts(f"hop-{uuid.uuid4().hex[:8]}")["A"]
    elsewhere = (shard_of(account) + 1) % SHARDS
    request = cmd.DepositRequest(command_id=new_command_id(), account_id=account, amount="1")
    forged = (("ledger-forwarded-by", "shard 9 of 10 over 6 partitions"),)
    error = await _refusal(stubs["shards"][elsewhere], request, metadata=forged)
    assert error.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "shard 9 of 10 over 6 partitions" in (error.details() or "")
    assert f"shard {elsewhere} of 3 over 6 partitions" in (error.details() or "")


async def test_an_atomic_batch_across_shards_is_refused_whole(
    stubs: dict[str, list[Stub]],
) -> None:
    roles = accounts(f"atomic-{uuid.uuid4().hex[:8]}")
    commands = [
        cmd.Command(
            open_account=cmd.OpenAccountRequest(
                command_id=new_command_id(), account_id=roles[r], currency="EUR"
            )
        )
        for r in "AC"
    ]
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await stubs["shards"][0].ExecuteBatch(
            cmd.ExecuteBatchRequest(commands=commands, atomic=True), timeout=30
        )
    assert refused.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert "atomic batch must keep to one shard" in (refused.value.details() or "")


async def test_a_shard_that_cannot_be_reached_is_unavailable_by_name_until_it_is_back(
    ledgers: Ledgers, stubs: dict[str, list[Stub]]
) -> None:
    account = accounts(f"down-{uuid.uuid4().hex[:8]}")["A"]
    owner = shard_of(account)
    entry = stubs["shards"][(owner + 1) % SHARDS]
    request = cmd.DepositRequest(command_id=new_command_id(), account_id=account, amount="1")
    await asyncio.to_thread(ledgers.shards[owner].stop)
    try:
        error = await _refusal(entry, request)
        assert error.code() == grpc.StatusCode.UNAVAILABLE
        assert f"shard {owner}" in (error.details() or ""), error.details()
        assert "retry with the same command_id" in (error.details() or "")
    finally:
        await asyncio.to_thread(ledgers.shards[owner].start)

    async def owner_answers() -> bool:
        # The account was never opened: NOT_FOUND is the owner's own answer.
        return (await _refusal(entry, request)).code() == grpc.StatusCode.NOT_FOUND

    # Forwarding recovers by itself once the owner is back (the peer channel reconnects).
    await eventually_async(owner_answers, timeout=30.0, interval=0.2)
