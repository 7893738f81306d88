"""The right to erasure on the real stack (docs/design.md, decision 14): after EraseOwner and the
key topic's compaction no byte of the stack's storage holds the owner, its SHA-256 or its key;
a rebuild of the read model from offset 0 and a restart of every process show it erased, with
every balance as before and other owners intact."""

from __future__ import annotations

import asyncio
import hashlib
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest
from confluent_kafka.admin import AdminClient, AlterConfigOpType, ConfigEntry, ConfigResource

from command_server.snapshot_topic import read_latest
from devstack.process import clean_environment
from devstack.stack import LocalStack
from ledger.command_ids import new_command_id
from ledger.key_topic import key_topic_name
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import commands_pb2_grpc as cmd_grpc
from ledger.v1 import queries_pb2 as pb
from ledger.v1 import queries_pb2_grpc as pb_grpc
from tests.e2e.running_ledger import RunningLedger
from tests.eventually import eventually_async

pytestmark = pytest.mark.integration

LEDGER_SECURE = True
# What the test makes the key topic do at once that production settings do within a day.
_COMPACT_NOW = {
    "segment.ms": "1000",
    "max.compaction.lag.ms": "1000",
    "min.cleanable.dirty.ratio": "0.001",
    "file.delete.delay.ms": "100",
}


def _needles(name: str) -> dict[str, bytes]:
    digest = hashlib.sha256(name.encode()).digest()
    return {
        "the name": name.encode(),
        "its SHA-256 (hex)": digest.hex().encode(),
        "its SHA-256 (raw)": digest,
    }


def _files(*roots: Path) -> Iterator[Path]:
    for root in roots:
        yield from (path for path in root.rglob("*") if path.is_file())


def _found(needles: dict[str, bytes], *roots: Path) -> list[str]:
    """Which needle is in which file under `roots` (files that vanish meanwhile are skipped)."""
    found = []
    for path in _files(*roots):
        try:
            data = path.read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            continue
        found += [f"{what} in {path}" for what, needle in needles.items() if needle in data]
    return found


class Ledger:
    def __init__(self, ledger: RunningLedger) -> None:
        assert ledger.credentials is not None
        self.ledger = ledger
        self.credentials = ledger.credentials
        self.token = ""

    async def command(self, method: str, request: object, token: str = "admin") -> object:
        async with self.ledger.command_server.channel(self.credentials.token(token)) as channel:
            reply = await getattr(cmd_grpc.CommandServiceStub(channel), method)(request)
        self.token = reply.consistency_token
        return reply

    async def open(self, account_id: str, owner: str) -> None:
        await self.command(
            "OpenAccount",
            cmd.OpenAccountRequest(
                command_id=new_command_id(), account_id=account_id, currency="EUR", owner=owner
            ),
        )

    async def account(self, account_id: str) -> pb.Account:
        async with self.ledger.query_server.channel(self.credentials.token("reader")) as channel:
            reply = await pb_grpc.QueryServiceStub(channel).GetAccount(
                pb.GetAccountRequest(account_id=account_id, consistency_token=self.token),
                timeout=30,
            )
        return reply.account


async def test_an_erased_owner_is_gone_from_every_store_and_stays_erased(
    ledger: RunningLedger, stack: LocalStack
) -> None:
    books = Ledger(ledger)
    tag = uuid.uuid4().hex[:10]
    erased, kept = f"Zelda Quixote {tag}", f"Kept Owner {tag}"
    await books.open(f"er-a-{tag}", erased)
    await books.open(f"er-b-{tag}", kept)
    await books.command(
        "Deposit",
        cmd.DepositRequest(command_id=new_command_id(), account_id=f"er-a-{tag}", amount="70"),
    )
    await books.command(
        "Transfer",
        cmd.TransferRequest(
            command_id=new_command_id(),
            from_account_id=f"er-a-{tag}",
            to_account_id=f"er-b-{tag}",
            amount="20",
        ),
    )
    before = await books.account(f"er-a-{tag}")
    assert (before.owner, before.owner_erased) == (erased, False)
    key_topic = key_topic_name(ledger.topic)
    wrapped = read_latest(stack.kafka_bootstrap, key_topic)[f"er-a-{tag}"]
    # Sealed from the start: the name never reached Kafka or PostgreSQL.
    storage = (stack.data_dir / "kafka", stack.data_dir / "registry", stack.data_dir / "postgres")
    assert _found(_needles(erased), *storage) == []

    erase = cmd.EraseOwnerRequest(command_id=new_command_id(), account_id=f"er-a-{tag}")
    with pytest.raises(grpc.aio.AioRpcError) as refused:
        await books.command("EraseOwner", erase, token="writer")
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    await books.command("EraseOwner", erase)

    async def shows_erasure() -> None:
        after = await books.account(f"er-a-{tag}")
        assert (after.owner, after.owner_erased) == ("", True)
        assert (after.balance, after.status) == ("50.00", before.status)
        other = await books.account(f"er-b-{tag}")
        assert (other.owner, other.owner_erased, other.balance) == (kept, False, "20.00")

    await shows_erasure()

    # Compaction now, not within the day KEY_TOPIC_CONFIG allows: every new account writes a
    # key, which rolls the segment holding the forgotten one so the cleaner can drop it.
    admin = AdminClient({"bootstrap.servers": stack.kafka_bootstrap})
    entries = [
        ConfigEntry(k, v, incremental_operation=AlterConfigOpType.SET)
        for k, v in _COMPACT_NOW.items()
    ]
    resource = ConfigResource(ConfigResource.Type.TOPIC, key_topic, incremental_configs=entries)
    admin.incremental_alter_configs([resource])[resource].result(30)
    rolled = 0

    async def key_bytes_gone() -> bool:
        nonlocal rolled
        rolled += 1
        # With an owner: an account without one needs no key.
        await books.open(f"er-roll-{tag}-{rolled}", "Roll")
        return not _found({"the wrapped key": wrapped}, stack.data_dir / "kafka")

    await eventually_async(
        key_bytes_gone, timeout=240, interval=2, message="the key topic was not compacted"
    )
    assert _found({**_needles(erased), "the wrapped key": wrapped}, *storage) == []

    # A rebuild from offset 0, then a restart of every process.
    rebuild = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "projector", "rebuild"],
        env=clean_environment(ledger.projector.env),
        capture_output=True,
        timeout=300,
        check=False,
    )
    assert rebuild.returncode == 0, rebuild.stderr.decode()[-2000:]
    await shows_erasure()
    services = (ledger.command_server, ledger.projector, ledger.query_server)
    for service in reversed(services):
        service.stop()
    for service in services:
        service.start()
    await shows_erasure()
    logs = ledger.command_server.log_file.parent
    assert _found(_needles(erased), *storage, logs) == []
