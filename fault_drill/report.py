"""The figures and the verdict of a drill: one JSON document (printed by `report_text`)."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from fault_drill.book import UNKNOWN
from fault_drill.calls import EXPECTED_TRANSIENT
from fault_drill.command_checks import CommandChecks
from fault_drill.config import COMPONENTS, DrillConfig
from fault_drill.faults import Crash, Fault, median_max
from fault_drill.journal import Journal, Mode, Result, Status
from fault_drill.log_fold import Fold
from fault_drill.read_model_checks import ReadModelChecks
from fault_drill.readers import ReadStats

SAMPLES = 20
"""How many examples of each kind of finding the report keeps."""


@dataclass(frozen=True, slots=True)
class Timing:
    load_started: float
    load_ended: float
    finished: float
    caught_up_s: float | None


FLOWING_WINDOW_S = 2.0
"""Writes count as flowing at a kill if an acknowledgement arrived this long before it."""


def write_outage(fault: Fault, acks: Sequence[tuple[float, float]]) -> float | None:
    """Seconds from the kill to the first acknowledgement of an attempt sent after it; None if
    writes were not flowing when the component was killed (an earlier outage still lasted)."""
    if not writes_flowing(fault, acks):
        return None
    finished = [end for start, end in acks if start >= fault.killed_at]
    return None if not finished else min(finished) - fault.killed_at


def writes_flowing(fault: Fault, acks: Sequence[tuple[float, float]]) -> bool:
    window = fault.killed_at - FLOWING_WINDOW_S
    return any(window <= end <= fault.killed_at for _, end in acks)


def _rounded(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def _check(
    checks: dict[str, Any], failures: list[str], name: str, label: str, found: list[str]
) -> None:
    """Record one check's findings in the report, and fail the drill if there are any."""
    checks[name] = {"count": len(found), "examples": found[:SAMPLES]}
    if found:
        failures.append(f"{label}: {len(found)} (e.g. {found[0]})")


def build_report(
    *,
    config: DrillConfig,
    journal: Journal,
    faults: Sequence[Fault],
    crashes: Sequence[Crash],
    unrecovered: Sequence[str],
    fold: Fold | None,
    commands: CommandChecks | None,
    read_model: ReadModelChecks | None,
    reads: ReadStats,
    dead_letter_records: int | None,
    dead_letter_rows: int | None,
    timing: Timing,
    errors: Sequence[str],
    topic: str,
    sagas: dict[str, Any],
) -> dict[str, Any]:
    records = list(journal)
    attempts = [a for r in records for a in r.attempts]
    acks = sorted((a.started, a.finished) for a in attempts if a.result is Result.ACK)
    transient = Counter(a.code for a in attempts if a.result is Result.TRANSIENT)
    refused = Counter(r.refusal for r in records if r.status is Status.REFUSED)
    deliberate = {
        # Commands whose first answer was lost on purpose (the attempt's deadline expired).
        "lost_answer": sum(
            1
            for r in records
            if r.mode is Mode.LOST_ANSWER
            and r.attempts
            and r.attempts[0].code == "DEADLINE_EXCEEDED"
        ),
        "twin": sum(1 for r in records if r.mode is Mode.TWIN),
        "resend_after_ack": sum(1 for a in attempts if a.mode is Mode.RESEND),
        "resend_after_recovery": sum(1 for a in attempts if a.mode is Mode.POST_RECOVERY),
        "same_id_other_payload": len(journal.reuse_probes),
    }
    kills = Counter(f.component for f in faults)
    restarts = Counter(c.component for c in crashes)

    recovery: dict[str, Any] = {}
    for component in config.fault_kinds:
        mine = [f for f in faults if f.component == component]
        ready = median_max([f.ready_s for f in mine if f.ready_s is not None])
        healthy = median_max([f.healthy_s for f in mine if f.healthy_s is not None])
        outage = median_max([o for f in mine if (o := write_outage(f, acks)) is not None])
        recovery[component] = {
            "kills": kills[component],
            "supervisor_restarts": restarts[component],
            "ready_median_s": _rounded(ready[0]),
            "ready_max_s": _rounded(ready[1]),
            "healthy_median_s": _rounded(healthy[0]),
            "healthy_max_s": _rounded(healthy[1]),
            "write_outage_median_s": _rounded(outage[0]),
            "write_outage_max_s": _rounded(outage[1]),
        }

    failures = list(errors)
    for kind in config.fault_kinds:
        if kills[kind] < config.min_kills:
            failures.append(f"fault {kind} happened {kills[kind]} times, not {config.min_kills}")
    failures.extend(unrecovered)
    failures.extend(f"{f.component} at {f.killed_at:.1f}s: {x}" for f in faults for x in f.failures)
    # The verdict never rests on a figure that is missing: no log read back, no read model.
    if commands is None:
        failures.append("the log was not checked against the journal (lost, duplicated unknown)")
    if read_model is None:
        failures.append("the read model was not compared with the fold of the log")
    checks: dict[str, Any] = {}
    if commands is not None:
        for name in (
            "lost",
            "duplicated",
            "wrong_effects",
            "answer_mismatches",
            "refused_but_applied",
            "phantoms",
            "unexpected_refusals",
            "unexpected_acks",
            "reuse_probe_failures",
            "balance_mismatches",
        ):
            _check(checks, failures, name, name, getattr(commands, name))
        if commands.unresolved:
            failures.append(f"{commands.unresolved} commands never got a final answer")
    if fold is not None:
        _check(checks, failures, "log_invariants", "log invariants", fold.violations)
        # A saga is exactly once only if it ended: still in flight after the bound is a finding
        # of the saga, and GetTransfer must tell the end the log holds.
        in_flight = [f"{t} sent, neither credited nor refunded" for t in sagas["in_flight"] or []]
        _check(checks, failures, "sagas_in_flight", "sagas still in flight", in_flight)
        disagree = sagas["end_disagreements"]
        _check(checks, failures, "saga_end_disagreements", "GetTransfer vs the log", disagree)
    if read_model is not None:
        _check(
            checks,
            failures,
            "read_model_invariants",
            "read model invariants",
            read_model.invariants,
        )
        if not read_model.equal:
            failures.append(
                "the read model differs from the fold of the log: "
                + "; ".join(read_model.differences[:3])
            )
    if reads.violations:
        failures.append(f"read-your-writes: {len(reads.violations)} (e.g. {reads.violations[0]})")
    if dead_letter_records or dead_letter_rows:
        failures.append(
            f"dead letters: {dead_letter_records} records in the topic, {dead_letter_rows} rows"
        )

    findings = [
        f"{c.component} crashed at {c.detected_at:.1f}s (exit code {c.exit_code}"
        + (f", while {c.during_fault} was down" if c.during_fault else "")
        + (
            f", back after {c.restarted_at - c.detected_at:.1f}s"
            if c.restarted_at is not None
            else ", never came back"
        )
        + f"): {c.log_tail.rsplit(' | ', 1)[-1]} (log: {c.log_file})"
        for c in crashes
    ]
    unexpected_codes = {code: n for code, n in transient.items() if code not in EXPECTED_TRANSIENT}
    if unexpected_codes:
        findings.append(
            f"command server: status codes it should not answer (retried): {unexpected_codes}"
        )
    if reads.unexpected:
        findings.append(
            f"query server: {len(reads.unexpected)} answers with a status it should not give "
            f"(retried), e.g. {reads.unexpected[0]}"
        )
    if sagas["refunded"]:
        findings.append(
            f"{sagas['refunded']} cross-shard transfers were refunded, though the drill sends "
            "transfers only to open accounts of the same currency"
        )
    if unknown := sagas["pending_ends_learned"].get(UNKNOWN):
        findings.append(
            f"{unknown} transfers answered PENDING whose end GetTransfer did not show within "
            f"{config.saga_end_deadline_s:g}s (their accounts were left uncertain)"
        )
    for fault in faults:
        if fault.start_failures and not fault.failures:
            findings.append(
                f"{fault.component} killed at {fault.killed_at:.1f}s: {len(fault.start_failures)} "
                f"failed starts before it was ready: {fault.start_failures[0]}"
                + (
                    " (SIGSEGV before exec: gRPC's fork handlers in the process that forked; "
                    "run it with GRPC_ENABLE_FORK_SUPPORT=false)"
                    if "code -11 " in fault.start_failures[0]
                    else ""
                )
            )
        down = write_outage(fault, acks)
        if down is not None and fault.healthy_s is not None and down > fault.healthy_s + 10:
            findings.append(
                f"{fault.component} killed at {fault.killed_at:.1f}s: writes were unavailable for "
                f"{down:.1f}s, {down - fault.healthy_s:.1f}s longer than it took every "
                "component to report healthy again"
            )

    return {
        "passed": not failures,
        "failures": failures,
        "findings": findings,
        "seed": config.seed,
        "topic": topic,
        "started_at": datetime.fromtimestamp(journal.wall_started, UTC).isoformat(
            timespec="seconds"
        ),
        "config": asdict(config),
        "load_s": round(timing.load_ended - timing.load_started, 1),
        "total_s": round(timing.finished, 1),
        "commands": {
            "sent": len(records),
            "acknowledged": sum(1 for r in records if r.status is Status.ACKNOWLEDGED),
            "refused": dict(refused),
            "unresolved": sum(1 for r in records if r.status is Status.UNRESOLVED),
            "by_kind": dict(Counter(r.kind.value for r in records)),
            "attempts": len(attempts),
            "acknowledgements_checked": None if commands is None else commands.acks_checked,
        },
        "retries": {
            "transient": sum(transient.values()),
            "transient_by_code": dict(transient),
            "deliberate": deliberate,
            "acknowledged_after_a_failed_attempt": None
            if commands is None
            else commands.retried_acknowledged,
            "answered_from_dedupe_memory": None
            if commands is None
            else commands.answered_from_memory,
        },
        "cross_shard_transfers": sagas,
        "lost": None if commands is None else len(commands.lost),
        "duplicated": None if commands is None else len(commands.duplicated),
        "kills": {c: kills[c] for c in config.fault_kinds},
        "supervisor_restarts": {c: restarts[c] for c in COMPONENTS},
        "recovery": recovery,
        "faults": [
            {
                "component": f.component,
                "killed_at_s": round(f.killed_at, 2),
                "restart_delay_s": round(f.restart_delay_s, 2),
                "ready_s": _rounded(f.ready_s),
                "healthy_s": _rounded(f.healthy_s),
                "writes_flowing_at_kill": writes_flowing(f, acks),
                "write_outage_s": _rounded(write_outage(f, acks)),
                "failed_starts": f.start_failures,
                "failures": f.failures,
                **f.notes,
            }
            for f in faults
        ],
        "crashes": [
            {
                "component": c.component,
                "detected_at_s": round(c.detected_at, 2),
                "exit_code": c.exit_code,
                "during_fault": c.during_fault,
                "restarted_after_s": None
                if c.restarted_at is None
                else round(c.restarted_at - c.detected_at, 2),
                "failed_starts": c.start_failures,
                "log_file": str(c.log_file),
                "log_tail": c.log_tail,
            }
            for c in crashes
        ],
        "log": {
            "records": None if fold is None else fold.events + fold.undecodable,
            "events": None if fold is None else fold.events,
            "undecodable": None if fold is None else fold.undecodable,
            "dead_letter_records": dead_letter_records,
        },
        "read_model": None
        if read_model is None
        else {
            "equals_fold": read_model.equal,
            "rows": read_model.rows,
            "checksums": read_model.checksums,
            "differences": read_model.differences[:SAMPLES],
            "dead_letter_rows": dead_letter_rows,
            "caught_up_s": _rounded(timing.caught_up_s),
        },
        "reads": {
            "reads": reads.reads,
            "transient": dict(reads.transient),
            "gave_up": reads.gave_up,
            "violations": reads.violations[:SAMPLES],
            "unexpected": reads.unexpected[:SAMPLES],
        },
        "checks": checks,
    }


def write_json(report: dict[str, Any], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2, sort_keys=False) + "\n")
