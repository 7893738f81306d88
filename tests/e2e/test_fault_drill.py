"""End to end under faults: nothing acknowledged is lost, nothing is applied twice.

The fault drill (see fault_drill/ and docs/reliability.md) at its small size, on the session's
stack: 12 concurrent clients send a mixed workload with deliberate retries while every kind of
fault happens once at a random (seeded) moment: the command server, the projector, the query
server, the Kafka broker and PostgreSQL SIGKILLed and restarted; a second command server of the
same shard started while the first runs; the command server and the broker paused (SIGSTOP) for a
few seconds; the command server restarted from a snapshot. Then the whole log is read back and
checked against the clients' journal, folded, and compared with the read model.

Reproduce a run's fault plan and workload choices with LEDGER_DRILL_SEED=<seed> (printed first).
"""

from __future__ import annotations

import copy
import dataclasses

import pytest

from devstack.stack import LocalStack
from fault_drill.command_checks import check_commands
from fault_drill.config import SNAPSHOT_RESTART, TAKEOVER, DrillConfig
from fault_drill.drill import DrillResult, run_drill
from fault_drill.fault_kinds import EXIT_FENCED
from fault_drill.faults import http_ok
from fault_drill.journal import Kind, Result
from fault_drill.log_fold import fold_log
from fault_drill.read_model_checks import check_read_model
from tests.e2e.drill_checks import assert_drill_passed, drill_seed

pytestmark = pytest.mark.integration


async def test_nothing_acknowledged_is_lost_nothing_applied_twice(
    stack: LocalStack, tmp_path_factory: pytest.TempPathFactory
) -> None:
    config = DrillConfig.test_size(drill_seed())
    print(f"fault drill seed {config.seed} (LEDGER_DRILL_SEED={config.seed} reproduces the plan)")
    result = await run_drill(stack, config, tmp_path_factory.mktemp("fault-drill"))
    report = result.report
    seed = f"seed {config.seed}"

    assert_drill_passed(report, config)
    (takeover,) = (f for f in report["faults"] if f["component"] == TAKEOVER)
    assert takeover["old_exit_code"] == EXIT_FENCED, (seed, takeover)
    (restart,) = (f for f in report["faults"] if f["component"] == SNAPSHOT_RESTART)
    assert restart["snapshot_offsets"], (seed, restart)
    assert restart["replayed_events"] < restart["events_behind"], (seed, restart)

    # The session's stack is left running and ready for the tests after this one.
    assert stack.kafka.is_running()
    assert stack.postgres.is_running()
    assert http_ok(f"{stack.registry_url}/subjects")

    _the_checks_catch_tampering(result)


def _the_checks_catch_tampering(result: DrillResult) -> None:
    """The checks have teeth: this run's own log, journal and read model, each tampered with
    the way a bug would, fail the check that guards against it."""
    records, journal, read_model = result.records, result.journal, result.read_model
    assert read_model is not None
    fold = fold_log(records)
    deposit = next(r for r in journal.acknowledged() if r.kind is Kind.DEPOSIT)
    (event,) = fold.by_command[deposit.command_id]

    # Applied twice: the deposit's event once more at the end of its partition.
    end = max(r.offset for r in records if r.partition == event.partition)
    twice = fold_log([*records, dataclasses.replace(event, offset=end + 1)])
    assert check_commands(journal, twice).duplicated
    assert twice.violations  # the same event id twice, a version that does not follow

    # Lost: the acknowledged deposit's event is not in the log.
    lost = fold_log([r for r in records if r != event])
    assert check_commands(journal, lost).lost

    # A retry answered with something else than the original answer.
    changed = copy.deepcopy(journal)
    record = changed.get(deposit.command_id)
    assert record is not None
    ack = next(a for a in record.attempts if a.result is Result.ACK)
    ack.version = (ack.version or 0) + 1
    assert check_commands(changed, fold).answer_mismatches

    # The read model one minor unit off on one account.
    account = read_model.accounts[0]
    off = (*account[:4], account[4] + 1, *account[5:])
    skewed = dataclasses.replace(read_model, accounts=[off, *read_model.accounts[1:]])
    checked = check_read_model(fold, skewed)
    assert not checked.equal
    assert checked.invariants
