"""`python -m fault_drill [--soak] [--seconds N] [--seed N] ...`: see docs/reliability.md.

Starts its own local stack (Kafka, registry, PostgreSQL on free loopback ports, data in the
output directory), runs one drill on it, prints the figures, writes them as JSON, stops the
stack. Exit code 0 when every check passed, 1 when one failed, 2 when the drill could not run.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

from devstack import LocalStack, StackPorts
from devstack.errors import StackError
from devstack.kafka_cluster import KafkaCluster
from fault_drill.config import CROSS_SHARD_TRANSFERS, DrillConfig
from fault_drill.drill import run_drill
from fault_drill.report import write_json
from fault_drill.report_text import render_markdown

DEFAULT_OUT = Path(".data") / "fault_drill"


def parse(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m fault_drill",
        description="Run the Ledger under load while SIGKILLing its processes, Kafka and "
        "PostgreSQL, taking the command server's shard over, pausing the broker and the command "
        "server; then check that nothing acknowledged was lost or applied twice.",
    )
    parser.add_argument(
        "--soak",
        action="store_true",
        help="the long size: >= 90 s of load, every kind of fault at least twice, "
        "more random faults while the load lasts",
    )
    parser.add_argument(
        "--three-brokers",
        action="store_true",
        help="the event topic on a three-broker Kafka of its own (3 replicas, min ISR 2); the "
        "only fault is then the partition leader's broker killed, each time another one",
    )
    parser.add_argument(
        "--three-shards",
        action="store_true",
        help="three command-server shards, clients entering by a random one each attempt; the "
        "only fault is then the debiting and the crediting shard of a transfer killed at once",
    )
    parser.add_argument(
        "--cross-shard-transfers",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="with --three-shards: whether transfers may cross shards (default: "
        "fault_drill.config.CROSS_SHARD_TRANSFERS)",
    )
    parser.add_argument(
        "--transfer-wait",
        type=float,
        help="with --three-shards: the shards' LEDGER_TRANSFER_WAIT_SECONDS (a short wait makes "
        "most cross-shard transfers answered PENDING; default: the server's)",
    )
    parser.add_argument("--seconds", type=float, help="minimum seconds of load")
    parser.add_argument("--seed", type=int, help="seed of the fault plan and the workload")
    parser.add_argument("--clients", type=int, help="concurrent command clients")
    parser.add_argument("--kills", type=int, help="minimum faults of each kind")
    parser.add_argument(
        "--projector-session-timeout-ms",
        type=int,
        help="the projector's consumer-group session timeout (default 6000)",
    )
    parser.add_argument(
        "--out",
        type=Path,
        help=f"output directory (default {DEFAULT_OUT}/<UTC time>): report.json, "
        "journal.jsonl, service logs, the stack's data",
    )
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--markdown", type=Path, help="also write the figures as Markdown here")
    parser.add_argument(
        "--keep-data",
        action="store_true",
        help="keep the stack's data (Kafka log, PostgreSQL) in the output directory",
    )
    return parser.parse_args(argv)


def config_from(args: argparse.Namespace) -> DrillConfig:
    config = DrillConfig.soak_size(args.seed) if args.soak else DrillConfig.test_size(args.seed)
    if args.three_brokers:
        config = config.on_three_brokers()
    if args.three_shards:
        cross = (
            CROSS_SHARD_TRANSFERS
            if args.cross_shard_transfers is None
            else args.cross_shard_transfers
        )
        config = config.on_three_shards(cross)
    changes: dict[str, object] = {}
    if args.seconds is not None:
        changes["seconds"] = args.seconds
    if args.transfer_wait is not None:
        changes["transfer_wait_s"] = args.transfer_wait
    if args.clients is not None:
        changes["clients"] = args.clients
    if args.kills is not None:
        changes["min_kills"] = args.kills
    if args.projector_session_timeout_ms is not None:
        changes["projector_session_timeout_ms"] = args.projector_session_timeout_ms
    return config.with_changes(**changes) if changes else config


def main(argv: Sequence[str] | None = None) -> None:
    args = parse(argv)
    config = config_from(args)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    out_dir: Path = (args.out or DEFAULT_OUT / stamp).absolute()
    stack_dir = out_dir / "stack"
    print(f"fault drill: seed {config.seed}, output in {out_dir}; starting the stack", flush=True)
    stack = LocalStack(stack_dir, StackPorts.free())
    try:
        stack.start()
    except StackError as error:
        print(f"cannot start the stack: {error}", file=sys.stderr)
        sys.exit(2)
    cluster = None
    if args.three_brokers:
        cluster = KafkaCluster(stack_dir / "kafka-cluster", stack.cache_dir)
    try:
        if cluster is not None:
            try:
                cluster.start()
            except StackError as error:
                print(f"cannot start the Kafka cluster: {error}", file=sys.stderr)
                sys.exit(2)
        report = asyncio.run(run_drill(stack, config, out_dir, cluster=cluster)).report
    finally:
        if cluster is not None:
            cluster.stop()
        stack.stop()
        if not args.keep_data:
            shutil.rmtree(stack_dir / "kafka" / "logs", ignore_errors=True)
            shutil.rmtree(stack_dir / "postgres" / "pgdata", ignore_errors=True)
            if cluster is not None:
                for node in cluster.nodes:
                    shutil.rmtree(node.log_dir, ignore_errors=True)
    if args.json is not None:
        write_json(report, args.json)
    if args.markdown is not None:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(render_markdown(report))
    sys.exit(0 if report["passed"] else 1)


if __name__ == "__main__":
    main()
