"""The fault drill on three command-server shards: clients enter by a random shard at every
attempt; under the drill's load, SIGKILL the shard owning a transfer's debited account and the
shard owning its credited account at once, restart both, twice. Every check of the drill holds:
0 lost, 0 duplicated, the read model equal to the fold, and the acknowledged commands sent again
(by random shards) answered from their originals. Transfers cross shards (the saga of decision
13): each one sent ends completed or refunded exactly once, none is still in flight once the
drill has waited for them, and what the clients learned with GetTransfer agrees with the log.
The shards wait 0 s for a saga's end (LEDGER_TRANSFER_WAIT_SECONDS), so every cross-shard
transfer is answered PENDING and the clients must follow each one to its end (the soak keeps
the server's default wait, where most are answered COMPLETED).

Reproduce a run with LEDGER_DRILL_SEED=<seed>.
"""

from __future__ import annotations

import pytest

from devstack.stack import LocalStack
from fault_drill.config import SHARD_PAIR, DrillConfig
from fault_drill.drill import run_drill
from tests.e2e.drill_checks import assert_drill_passed, drill_seed

pytestmark = pytest.mark.integration


async def test_killing_the_debiting_and_crediting_shards_loses_nothing_and_applies_nothing_twice(
    stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = (
        DrillConfig.test_size(drill_seed())
        .on_three_shards()
        .with_changes(seconds=20.0, transfer_wait_s=0.0)
    )
    print(f"fault drill seed {config.seed} (LEDGER_DRILL_SEED={config.seed} reproduces the plan)")
    result = await run_drill(stack, config, tmp_path_factory.mktemp("fault-drill-shards"))
    report = result.report

    assert_drill_passed(report, config)
    kills = [f for f in report["faults"] if f["component"] == SHARD_PAIR]
    assert len(kills) == 2, (config.seed, kills)
    assert all(k["debit_shard"] != k["credit_shard"] for k in kills), kills
    assert report["commands"]["acknowledged"] > 0
    sagas = report["cross_shard_transfers"]
    assert sagas["sent"] > 0, (config.seed, sagas)
    assert sagas["in_flight"] == [], (config.seed, sagas)
    assert sagas["completed"] + sagas["refunded"] == sagas["sent"], (config.seed, sagas)
    assert sagas["end_disagreements"] == [], (config.seed, sagas)
    assert sagas["answered_pending"] > 0, (config.seed, sagas)
    learned = sagas["pending_ends_learned"]
    assert sum(learned.values()) == sagas["answered_pending"], (config.seed, sagas)
    assert "unknown" not in learned, (config.seed, sagas)
