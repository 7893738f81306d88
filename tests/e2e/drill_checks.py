"""What every fault drill run must show, whatever its faults: each planned fault happened and
came back, 0 lost, 0 duplicated, every other check clean, the read model equal to the fold."""

from __future__ import annotations

import os
from typing import Any

from fault_drill.config import DrillConfig


def drill_seed() -> int | None:
    """LEDGER_DRILL_SEED, to replay a run's fault plan and workload choices."""
    raw = os.environ.get("LEDGER_DRILL_SEED", "").strip()
    return int(raw) if raw else None


def examples(report: dict[str, Any], check: str) -> list[str]:
    found: list[str] = report["checks"].get(check, {}).get("examples", [])
    return found


def assert_drill_passed(report: dict[str, Any], config: DrillConfig) -> None:
    seed = f"seed {config.seed}"
    kills = report["kills"]
    assert all(kills[kind] >= config.min_kills for kind in config.fault_kinds), (seed, kills)
    for fault in report["faults"]:
        assert fault["ready_s"] is not None, (seed, fault)
        assert not fault["failures"], (seed, fault)
    assert report["commands"]["acknowledged"] > 0, seed
    assert report["lost"] == 0, (seed, examples(report, "lost"))
    assert report["duplicated"] == 0, (seed, examples(report, "duplicated"))
    for check in (
        "answer_mismatches",
        "wrong_effects",
        "refused_but_applied",
        "phantoms",
        "balance_mismatches",
        "reuse_probe_failures",
        "log_invariants",
        "read_model_invariants",
    ):
        assert report["checks"][check]["count"] == 0, (seed, check, examples(report, check))
    assert report["commands"]["unresolved"] == 0, seed
    assert report["read_model"] is not None, (seed, report["failures"])
    assert report["read_model"]["equals_fold"], (seed, report["read_model"]["differences"])
    assert not report["reads"]["violations"], (seed, report["reads"]["violations"])
    assert report["passed"], (seed, report["failures"])
