"""The report printed: a short text for the terminal, and Markdown for docs/reliability.md."""

from __future__ import annotations

from typing import Any

from fault_drill.config import BROKER_FAULT_KINDS, SHARD_FAULT_KINDS, DrillConfig


def _s(value: Any) -> str:
    return "-" if value is None else f"{value:.1f}"


def _pairs(counts: dict[str, Any] | None) -> str:
    return ", ".join(f"{key} {value}" for key, value in (counts or {}).items()) or "none"


def _checksums(read_model: dict[str, Any]) -> str:
    """The per-table checksums, shortened, when fold and read model agree."""
    checksums = read_model.get("checksums") or {}
    fold, sql = checksums.get("fold", {}), checksums.get("read_model", {})
    return ", ".join(
        f"{table} {digest[:12]}"
        + ("" if sql.get(table) == digest else f" != {sql.get(table, '')[:12]}")
        for table, digest in fold.items()
    )


def render_text(report: dict[str, Any]) -> str:
    commands = report["commands"]
    retries = report["retries"]
    lines = [
        f"fault drill seed {report['seed']}: {report['load_s']}s of load, "
        f"{report['config']['clients']} clients, {report['total_s']}s in all "
        f"(topic {report['topic']})",
        f"commands: {commands['sent']} sent, {commands['acknowledged']} acknowledged, "
        f"refused {commands['refused'] or 0}, {commands['unresolved']} unresolved; "
        f"{commands['attempts']} attempts",
        f"retries: {retries['transient']} failed attempts retried {retries['transient_by_code']} "
        "(including the answers lost on purpose); deliberate "
        f"{retries['deliberate']}; {retries['acknowledged_after_a_failed_attempt']} acknowledged "
        f"after a failed attempt, {retries['answered_from_dedupe_memory']} of them answered "
        "from the dedupe memory (written, answer lost, retry got the original)",
        "",
        f"{'fault':<32}{'times':>6}{'crashes':>8}  {'ready after fault (s)':>22}  "
        f"{'all healthy (s)':>17}  {'write outage (s)':>17}",
        f"{'':<32}{'':>6}{'':>8}  {'median':>11}{'max':>11}  {'median':>9}{'max':>8}  "
        f"{'median':>9}{'max':>8}",
    ]
    for component, r in report["recovery"].items():
        lines.append(
            f"{component:<32}{r['kills']:>6}{r['supervisor_restarts']:>8}  "
            f"{_s(r['ready_median_s']):>11}{_s(r['ready_max_s']):>11}  "
            f"{_s(r['healthy_median_s']):>9}{_s(r['healthy_max_s']):>8}  "
            f"{_s(r['write_outage_median_s']):>9}{_s(r['write_outage_max_s']):>8}"
        )
    sagas = report["cross_shard_transfers"]
    lines += [
        "",
        f"cross-shard transfers: {sagas['sent']} sent, {sagas['completed']} completed, "
        f"{sagas['refunded']} refunded, {len(sagas['in_flight'] or [])} in flight after waiting "
        f"{sagas['in_flight_wait_s']}s; {sagas['answered_pending']} answered PENDING, ends "
        f"learned by GetTransfer {_pairs(sagas['pending_ends_learned'])} (median "
        f"{_s(sagas['pending_end_median_s'])}s, max {_s(sagas['pending_end_max_s'])}s)",
    ]
    read_model = report["read_model"] or {}
    log = report["log"]
    lines += [
        "",
        f"log: {log['events']} events; read model: {read_model.get('rows')}, "
        f"caught up {read_model.get('caught_up_s')}s after the load",
        f"read model sha256 (fold vs SQL): {_checksums(read_model)}",
        f"LOST: {report['lost']}   DUPLICATED: {report['duplicated']}   "
        f"read model == fold: {read_model.get('equals_fold')}   "
        f"reads with a token: {report['reads']['reads']} "
        f"({len(report['reads']['violations'])} stale)",
    ]
    for name, check in report["checks"].items():
        if check["count"]:
            lines.append(f"  {name}: {check['count']}, e.g. {check['examples'][0]}")
    if report["findings"]:
        lines.append("findings:")
        lines += [f"  - {finding}" for finding in report["findings"]]
    lines.append("RESULT: " + ("PASS" if report["passed"] else "FAIL"))
    lines += [f"  - {failure}" for failure in report["failures"]]
    return "\n".join(lines)


def replay_command(report: dict[str, Any]) -> str:
    """The command line that replays a run's plan and workload choices."""
    config = report["config"]
    soak = bool(config["extra_kills"])
    size = DrillConfig.soak_size(0) if soak else DrillConfig.test_size(0)
    words = ["python -m fault_drill"] + (["--soak"] if soak else [])
    if tuple(config["fault_kinds"]) == BROKER_FAULT_KINDS:
        size = size.on_three_brokers()
        words.append("--three-brokers")
    if tuple(config["fault_kinds"]) == SHARD_FAULT_KINDS:
        size = size.on_three_shards(config["cross_shard_transfers"])
        words.append("--three-shards")
        cross = config["cross_shard_transfers"]
        words.append("--cross-shard-transfers" if cross else "--no-cross-shard-transfers")
        if config.get("transfer_wait_s") is not None:
            words.append(f"--transfer-wait {config['transfer_wait_s']:g}")
    if config["seconds"] != size.seconds:
        words.append(f"--seconds {config['seconds']:g}")
    if config["min_kills"] != size.min_kills:
        words.append(f"--kills {config['min_kills']}")
    if config["clients"] != size.clients:
        words.append(f"--clients {config['clients']}")
    if config["projector_session_timeout_ms"] != size.projector_session_timeout_ms:
        words.append(f"--projector-session-timeout-ms {config['projector_session_timeout_ms']}")
    words.append(f"--seed {report['seed']}")
    return " ".join(words)


_PLAIN_FAULT_FIELDS = frozenset(
    {
        "component",
        "killed_at_s",
        "restart_delay_s",
        "ready_s",
        "healthy_s",
        "writes_flowing_at_kill",
        "write_outage_s",
        "failed_starts",
        "failures",
    }
)
"""What the report says of every fault; the rest is what a fault's kind noted."""


def render_markdown(report: dict[str, Any]) -> str:
    """The figures as Markdown, for docs/reliability.md."""
    commands = report["commands"]
    retries = report["retries"]
    read_model = report["read_model"] or {}
    rows = read_model.get("rows") or {}
    lines = [
        f"Seed `{report['seed']}`, {report['started_at']}: {report['load_s']} s of load from "
        f"{report['config']['clients']} clients, {report['total_s']} s in all "
        f"(`{replay_command(report)}` replays the plan).",
        "",
        "| figure | value |",
        "| --- | --- |",
        f"| commands sent / acknowledged | {commands['sent']} / {commands['acknowledged']} |",
        f"| commands by kind | {_pairs(commands['by_kind'])} |",
        f"| refused (final answers, all provoked on purpose) | {_pairs(commands['refused'])} |",
        f"| unresolved | {commands['unresolved']} |",
        f"| failed attempts retried (incl. answers lost on purpose) | {retries['transient']}: "
        f"{_pairs(retries['transient_by_code'])} |",
        f"| deliberate retries | {_pairs(retries['deliberate'])} |",
        f"| acknowledged after a failed attempt | "
        f"{retries['acknowledged_after_a_failed_attempt']} |",
        f"| of which written before the retry, answered from the dedupe memory | "
        f"{retries['answered_from_dedupe_memory']} |",
        f"| answers compared with the log | {commands['acknowledgements_checked']} |",
        f"| **lost** | **{report['lost']}** |",
        f"| **duplicated** | **{report['duplicated']}** |",
        f"| events in the log | {report['log']['events']} |",
        _saga_row(report["cross_shard_transfers"]),
        f"| read model == fold of the log | {read_model.get('equals_fold')}: {_pairs(rows)} rows; "
        f"sha256 {_checksums(read_model)} |",
        f"| projector caught up after the load | {read_model.get('caught_up_s')} s |",
        f"| reads with a consistency token (stale) | {report['reads']['reads']} "
        f"({len(report['reads']['violations'])}) |",
        f"| result | {'PASS' if report['passed'] else 'FAIL'} |",
        "",
        "| fault | times | crashes (supervisor restarts) | ready after the fault, median / max (s) "
        "| all healthy, median / max (s) | write outage, median / max (s) |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for component, r in report["recovery"].items():
        lines.append(
            f"| {component} | {r['kills']} | {r['supervisor_restarts']} | "
            f"{_s(r['ready_median_s'])} / {_s(r['ready_max_s'])} | "
            f"{_s(r['healthy_median_s'])} / {_s(r['healthy_max_s'])} | "
            f"{_s(r['write_outage_median_s'])} / {_s(r['write_outage_max_s'])} |"
        )
    details = [f for f in report["faults"] if set(f) - _PLAIN_FAULT_FIELDS]
    if details:
        lines += ["", "What the faults other than kills saw:", ""]
        lines += [
            f"- {f['component']} at {f['killed_at_s']} s: "
            + ", ".join(f"{k} {f[k]}" for k in f if k not in _PLAIN_FAULT_FIELDS)
            for f in details
        ]
    if report["findings"]:
        lines += ["", "Findings of this run:", ""]
        lines += [f"- {finding[:400]}" for finding in report["findings"]]
    if report["failures"]:
        lines += ["", "Failures:", ""]
        lines += [f"- {failure[:400]}" for failure in report["failures"]]
    return "\n".join(lines) + "\n"


def _saga_row(sagas: dict[str, Any]) -> str:
    return (
        f"| cross-shard transfers sent / completed / refunded / in flight after waiting "
        f"(waited) | {sagas['sent']} / {sagas['completed']} / {sagas['refunded']} / "
        f"{len(sagas['in_flight'] or [])} ({sagas['in_flight_wait_s']} s); "
        f"{sagas['answered_pending']} answered PENDING, ends learned with GetTransfer: "
        f"{_pairs(sagas['pending_ends_learned'])}, median / max {_s(sagas['pending_end_median_s'])}"
        f" / {_s(sagas['pending_end_max_s'])} s |"
    )
