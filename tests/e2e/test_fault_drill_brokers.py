"""The fault drill on three brokers: under the drill's load, SIGKILL the broker leading most of
the event topic's partitions, restart it, later another one (fault kind LEADER_BROKER, twice).
Every check of the drill holds: 0 lost, 0 duplicated, the read model equal to the fold.

The stack's registry and PostgreSQL serve as usual; the event topic (3 replicas,
min.insync.replicas 2) and the Ledger processes' Kafka are the cluster's. Reproduce a run with
LEDGER_DRILL_SEED=<seed>.
"""

from __future__ import annotations

import pytest

from devstack.kafka_cluster import KafkaCluster
from devstack.stack import LocalStack
from fault_drill.config import LEADER_BROKER, DrillConfig
from fault_drill.drill import run_drill
from tests.e2e.drill_checks import assert_drill_passed, drill_seed

pytestmark = pytest.mark.integration


async def test_killing_the_leader_broker_twice_loses_nothing_and_applies_nothing_twice(
    stack: LocalStack, kafka_cluster: KafkaCluster, tmp_path_factory: pytest.TempPathFactory
) -> None:
    # Short load: the two kills (each a broker down 6-10 s, then its replicas back in sync) set
    # the run's length, not the load's minimum.
    config = DrillConfig.test_size(drill_seed()).on_three_brokers().with_changes(seconds=20.0)
    print(f"fault drill seed {config.seed} (LEDGER_DRILL_SEED={config.seed} reproduces the plan)")
    result = await run_drill(
        stack, config, tmp_path_factory.mktemp("fault-drill-brokers"), cluster=kafka_cluster
    )
    report = result.report

    assert_drill_passed(report, config)
    kills = [f for f in report["faults"] if f["component"] == LEADER_BROKER]
    killed = [f["node"] for f in kills]
    assert len(killed) == 2, (config.seed, kills)
    assert killed[0] != killed[1], (config.seed, kills)
    assert all(f["partitions_led"] > 0 for f in kills), (config.seed, kills)
    assert all(node.is_running() for node in kafka_cluster.nodes)
