"""The fault drill's plan covers every kind of fault, and its verdict fails on any broken check."""

from __future__ import annotations

import itertools
from collections import Counter
from typing import Any

import pytest

from fault_drill.book import REFUNDED
from fault_drill.config import (
    FAULT_KINDS,
    LEADER_BROKER,
    SNAPSHOT_RESTART,
    TAKEOVER,
    DrillConfig,
)
from fault_drill.faults import Fault, FaultInjector, Supervisor
from fault_drill.journal import Journal
from fault_drill.log_fold import fold_log
from fault_drill.readers import ReadStats
from fault_drill.report import Timing, build_report
from fault_drill.sagas import Followed, SagaLog, saga_report


async def _always() -> bool:
    return True


def _injector(config: DrillConfig) -> FaultInjector:
    journal = Journal()
    supervisor = Supervisor({}, journal, deadline_s=1, say=print)
    return FaultInjector({}, supervisor, journal, config, healthy=_always, say=print)


@pytest.mark.parametrize("kills", [1, 2, 3])
def test_the_plan_has_every_kind_of_fault_as_often_as_asked_never_twice_in_a_row(
    kills: int,
) -> None:
    config = DrillConfig.test_size(7).with_changes(min_kills=kills)
    plan = _injector(config).plan()

    assert Counter(plan) == {kind: kills for kind in FAULT_KINDS}
    assert all(a != b for a, b in itertools.pairwise(plan))


def test_the_snapshot_restarts_come_last_so_that_the_log_has_grown() -> None:
    plan = _injector(DrillConfig.soak_size(7)).plan()

    assert plan[-1] == SNAPSHOT_RESTART
    assert SNAPSHOT_RESTART not in plan[: len(plan) - 3]


def test_on_three_brokers_the_plan_kills_the_leader_broker_twice_and_nothing_else() -> None:
    config = DrillConfig.test_size(7).on_three_brokers()

    assert _injector(config).plan() == [LEADER_BROKER, LEADER_BROKER]
    report = _report([Fault(LEADER_BROKER, 1.0, 0.0, ready_at=2.0, healthy_at=3.0)], config)
    assert "fault kafka_leader_broker happened 1 times, not 2" in report["failures"]
    assert set(report["kills"]) == {LEADER_BROKER}


def _report(faults: list[Fault], config: DrillConfig, **changes: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "config": config,
        "journal": Journal(),
        "faults": faults,
        "crashes": [],
        "unrecovered": [],
        "fold": None,
        "commands": None,
        "read_model": None,
        "reads": ReadStats(),
        "dead_letter_records": 0,
        "dead_letter_rows": 0,
        "timing": Timing(0, 1, 2, None),
        "errors": [],
        "topic": "t",
        "sagas": saga_report([], None, None, None),
    }
    return build_report(**(arguments | changes))


def test_a_saga_still_in_flight_or_a_transfer_end_the_log_contradicts_fails_the_drill() -> None:
    config = DrillConfig.test_size(7).on_three_shards()
    sent = SagaLog(sent={"t1", "t2"}, credited={"t2"})
    followed = Followed(ends={"t2": REFUNDED})

    report = _report([], config, fold=fold_log([]), sagas=saga_report([], sent, followed, 90.0))

    assert report["cross_shard_transfers"]["in_flight"] == ["t1"]
    assert report["checks"]["sagas_in_flight"]["count"] == 1
    assert report["checks"]["saga_end_disagreements"]["count"] == 1
    assert any("sagas still in flight" in f for f in report["failures"])


def test_a_drill_that_never_checked_the_log_or_the_read_model_fails() -> None:
    config = DrillConfig.test_size(7)
    faults = [Fault(kind, 1.0, 0.0, ready_at=2.0, healthy_at=3.0) for kind in FAULT_KINDS]

    report = _report(faults, config)

    assert not report["passed"]
    assert any("lost, duplicated unknown" in f for f in report["failures"])
    assert any("read model was not compared" in f for f in report["failures"])


def test_a_missing_kind_of_fault_and_a_broken_promise_fail_the_drill() -> None:
    config = DrillConfig.test_size(7)
    faults = [Fault(kind, 1.0, 0.0) for kind in FAULT_KINDS if kind != TAKEOVER]
    faults[0].failures.append("the fenced command server exited with code 1, not 3")

    failures = _report(faults, config)["failures"]

    assert any(TAKEOVER in f and "happened 0 times" in f for f in failures)
    assert any("exited with code 1, not 3" in f for f in failures)
