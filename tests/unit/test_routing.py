"""Routing: the shard owning a command's first account decides it; batches divide by owner; the
peers' configuration is checked at start."""

from __future__ import annotations

import pytest

from command_server.peers import peers_from_env
from command_server.routing import AtomicAcrossShards, Router
from command_server.shards import Shard
from ledger.command_ids import new_command_id
from ledger.domain.commands import Deposit, Transfer
from ledger.environment import SettingsError
from ledger.partitioning import partition_of

ROUTER = Router(Shard(index=0, count=3, partitions=6))


def _on(shard: int, prefix: str = "acct") -> str:
    return next(
        f"{prefix}-{n}" for n in range(1000) if partition_of(f"{prefix}-{n}", 6) % 3 == shard
    )


def _deposit(account: str) -> Deposit:
    return Deposit(command_id=new_command_id(), account_id=account, amount="1")


def test_a_transfer_belongs_to_the_shard_of_its_debited_account() -> None:
    transfer = Transfer(
        command_id=new_command_id(), from_account_id=_on(2), to_account_id=_on(0), amount="1"
    )
    assert ROUTER.owner_of(transfer) == 2
    assert not ROUTER.is_local(transfer)


def test_a_batch_divides_by_owner_in_request_order() -> None:
    commands = [(0, _deposit(_on(1))), (1, _deposit(_on(0))), (2, _deposit(_on(1, "b")))]
    plan = ROUTER.plan(commands, atomic=False)
    assert plan.local == [1]
    assert plan.foreign == {1: [0, 2]}


def test_an_atomic_batch_of_one_other_shard_stays_whole() -> None:
    plan = ROUTER.plan([(0, _deposit(_on(2))), (1, _deposit(_on(2, "b")))], atomic=True)
    assert plan.foreign == {2: [0, 1]}
    assert plan.local == []


def test_an_atomic_batch_across_shards_is_refused_naming_them() -> None:
    with pytest.raises(AtomicAcrossShards, match=r"shards \[0, 2\]"):
        ROUTER.plan([(0, _deposit(_on(0))), (1, _deposit(_on(2)))], atomic=True)


def test_a_forwarded_command_for_another_shard_names_both_views() -> None:
    refusal = ROUTER.refuse_forwarded(_deposit(_on(1)), "shard 2 of 4 over 6 partitions")
    assert "shard 2 of 4 over 6 partitions" in str(refusal)
    assert "shard 0 of 3 over 6 partitions" in str(refusal)
    assert "LEDGER_COMMAND_PEERS" in str(refusal)


PEERS = "127.0.0.1:50051,127.0.0.1:50061,127.0.0.1:50071"


def test_peers_are_one_address_per_shard() -> None:
    with pytest.raises(SettingsError, match="lists 3 addresses but LEDGER_SHARD_COUNT is 2"):
        peers_from_env({"LEDGER_COMMAND_PEERS": PEERS}, 2)
    assert peers_from_env({"LEDGER_COMMAND_PEERS": PEERS}, 3).addresses[2] == "127.0.0.1:50071"
    assert not peers_from_env({}, 3).forwarding


def test_peers_over_tls_need_the_ca() -> None:
    env = {"LEDGER_COMMAND_PEERS": PEERS, "LEDGER_TLS_CERT": "/etc/server.pem"}
    with pytest.raises(SettingsError, match="LEDGER_COMMAND_PEERS_CA"):
        peers_from_env(env, 3)
    with pytest.raises(SettingsError, match=r"cannot read /nonexistent/ca\.pem"):
        peers_from_env({**env, "LEDGER_COMMAND_PEERS_CA": "/nonexistent/ca.pem"}, 3)


def test_plaintext_peers_must_be_on_loopback() -> None:
    with pytest.raises(SettingsError, match="plaintext"):
        peers_from_env({"LEDGER_COMMAND_PEERS": "10.0.0.1:50051,127.0.0.1:50061"}, 2)
