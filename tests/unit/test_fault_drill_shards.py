"""The three-shard drill: its plan, how it picks the shards to kill, how a run is replayed."""

from __future__ import annotations

from typing import Any, cast

from fault_drill.config import SHARD_PAIR, DrillConfig
from fault_drill.faults import Component, Fault, FaultInjector, Supervisor
from fault_drill.journal import OK, CommandRecord, Journal, Kind
from fault_drill.report_text import replay_command
from fault_drill.shards import ShardPairKill, shard_component_name
from fault_drill.workload import shard_of
from ledger.command_ids import new_command_id

CONFIG = DrillConfig.test_size(7).on_three_shards(cross_shard_transfers=False)


async def _always() -> bool:
    return True


def test_on_three_shards_the_plan_kills_shard_pairs_twice_and_nothing_else() -> None:
    journal = Journal()
    supervisor = Supervisor({}, journal, deadline_s=1, say=print)
    injector = FaultInjector({}, supervisor, journal, CONFIG, healthy=_always, say=print)
    assert injector.plan() == [SHARD_PAIR, SHARD_PAIR]
    assert (CONFIG.shards, CONFIG.cross_shard_transfers) == (3, False)


def _account_on(shard: int, prefix: str) -> str:
    accounts = (f"{prefix}-{n}" for n in range(1000))
    return next(a for a in accounts if shard_of(a, CONFIG) == shard)


def _kill(journal: Journal) -> ShardPairKill:
    components = {shard_component_name(i): cast(Component, object()) for i in range(CONFIG.shards)}
    return ShardPairKill(components, journal, journal, CONFIG)


def _transfer(journal: Journal, source: str, target: str) -> None:
    record = CommandRecord(new_command_id(), Kind.TRANSFER, 0, (source, target), 1, "EUR", OK, {})
    journal.add(record)


def test_the_debiting_and_the_crediting_shard_of_the_latest_transfer_are_killed() -> None:
    journal = Journal()
    _transfer(journal, _account_on(0, "a"), _account_on(0, "b"))
    _transfer(journal, _account_on(2, "a"), _account_on(1, "b"))
    fault = Fault(SHARD_PAIR, 1.0, 0.0)
    assert _kill(journal)._victims(fault) == (2, 1)
    assert fault.notes["cross_shard_transfer"] is True


def test_a_same_shard_transfer_kills_its_shard_and_another() -> None:
    journal = Journal()
    _transfer(journal, _account_on(1, "a"), _account_on(1, "b"))
    fault = Fault(SHARD_PAIR, 1.0, 0.0)
    debit, credit = _kill(journal)._victims(fault)
    assert debit == 1
    assert credit != 1
    assert fault.notes["cross_shard_transfer"] is False


def test_a_three_shard_run_is_replayed_with_its_flags() -> None:
    report: dict[str, Any] = {
        "config": {
            "extra_kills": False,
            "fault_kinds": [SHARD_PAIR],
            "cross_shard_transfers": False,
            "seconds": CONFIG.seconds,
            "min_kills": CONFIG.min_kills,
            "clients": CONFIG.clients,
            "projector_session_timeout_ms": CONFIG.projector_session_timeout_ms,
        },
        "seed": 7,
    }
    assert replay_command(report) == (
        "python -m fault_drill --three-shards --no-cross-shard-transfers --seed 7"
    )
    report["config"] |= {"cross_shard_transfers": True, "transfer_wait_s": 0.0}
    assert replay_command(report) == (
        "python -m fault_drill --three-shards --cross-shard-transfers --transfer-wait 0 --seed 7"
    )
