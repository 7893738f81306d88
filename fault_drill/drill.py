"""One drill on a running local stack: its own topic and database, the three Ledger processes,
the load, the faults, then every check. The stack is left running and ready."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import time
import traceback
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from confluent_kafka.admin import AdminClient

from command_server.topic import Replication, ensure_event_topic
from devstack.credentials import local_credentials
from devstack.databases import create_database, drop_database
from devstack.errors import StackError
from devstack.kafka_cluster import KafkaCluster
from devstack.ledger_services import LedgerService, grpc_serving
from devstack.ports import LOOPBACK, free_port
from devstack.stack import LocalStack
from fault_drill.book import Book
from fault_drill.brokers import (
    MIN_INSYNC_REPLICAS,
    REPLICATION_FACTOR,
    LeaderKill,
    cluster_component,
    cluster_env,
    restore,
)
from fault_drill.calls import CHANNEL_OPTIONS, GiveUp
from fault_drill.command_checks import CommandChecks, check_commands
from fault_drill.command_servers import CommandServers
from fault_drill.config import (
    COMMAND_SERVER,
    COMMAND_SERVER_PAUSE,
    KAFKA,
    KAFKA_PAUSE,
    LEADER_BROKER,
    POSTGRES,
    PROJECTOR,
    QUERY_SERVER,
    SHARD_PAIR,
    SNAPSHOT_RESTART,
    TAKEOVER,
    DrillConfig,
)
from fault_drill.event_log import LogRecord, LogUnreadable, count_records, read_log
from fault_drill.fault_kinds import Pause, SnapshotRestart, Takeover
from fault_drill.faults import Component, FaultInjector, Supervisor, projector_assigned
from fault_drill.journal import Journal, Status
from fault_drill.log_fold import Fold, fold_log
from fault_drill.read_model_checks import ReadModelChecks, check_read_model
from fault_drill.read_model_snapshot import NotCaughtUp, Snapshot, snapshot, wait_caught_up
from fault_drill.readers import Reader, ReadStats
from fault_drill.report import Timing, build_report, write_json
from fault_drill.report_text import render_text
from fault_drill.sagas import SagaLog, TransferWatch, saga_report, wait_sagas_ended
from fault_drill.shards import ShardedCommandServers, ShardPairKill, ledger_component
from fault_drill.workload import Client, resend_acknowledged
from ledger.v1 import queries_pb2_grpc as qry_grpc

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class DrillResult:
    report: dict[str, Any]
    """The figures and the verdict (also in `out_dir/report.json`)."""
    journal: Journal
    records: list[LogRecord]
    """The whole log as read back at the end (empty if it could not be read)."""
    read_model: Snapshot | None


def printer(journal: Journal) -> Say:
    def say(message: str) -> None:
        print(f"[{journal.now():7.1f}s] {message}", flush=True)

    return say


def _always_ok() -> bool:
    return True


async def run_drill(
    stack: LocalStack,
    config: DrillConfig,
    out_dir: Path,
    *,
    say: Say | None = None,
    keep_database: bool = False,
    cluster: KafkaCluster | None = None,
) -> DrillResult:
    """Run one drill on `stack` (which must be running) and return its report (also written to
    `out_dir/report.json`, with the journal in `out_dir/journal.jsonl`) and what it checked.

    With a running `cluster`, the event topic and the Ledger processes' Kafka are there
    (fault_drill/brokers.py); the registry and PostgreSQL stay the stack's."""
    journal = Journal()
    say = say or printer(journal)
    await asyncio.to_thread(out_dir.mkdir, parents=True, exist_ok=True)
    run_id = f"d{uuid.uuid4().hex[:6]}"
    topic = f"drill_{run_id}"
    database = f"drill_{run_id}"
    say(
        f"fault drill, seed {config.seed} (reproduce the plan with --seed {config.seed}); "
        f"topic {topic}, database {database}, logs in {out_dir / 'logs'}"
    )
    bootstrap = stack.kafka_bootstrap if cluster is None else cluster.bootstrap_servers
    kafka_env = {} if cluster is None else cluster_env(cluster)
    replication = None if cluster is None else Replication(REPLICATION_FACTOR, MIN_INSYNC_REPLICAS)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    await asyncio.to_thread(ensure_event_topic, admin, topic, config.partitions, replication)
    database_url = await create_database(stack, database)

    # Both servers serve TLS and check tokens, as in production; the clients use the writer token.
    credentials = await asyncio.to_thread(local_credentials, out_dir)
    token = credentials.token("writer")

    def command_server(data_dir: Path) -> LedgerService:
        # Snapshots often enough that a restart restores one (fault kind SNAPSHOT_RESTART).
        return LedgerService.command_server(
            stack,
            data_dir,
            topic=topic,
            extra_env={
                **kafka_env,
                "LEDGER_METRICS_ADDR": f"{LOOPBACK}:{free_port()}",
                "LEDGER_SNAPSHOT_EVERY_EVENTS": str(config.snapshot_every_events),
            },
            secure=credentials,
        )

    sharded = None
    if config.shards > 1:
        sharded = ShardedCommandServers(
            stack,
            out_dir,
            topic=topic,
            env={**kafka_env, "LEDGER_SNAPSHOT_EVERY_EVENTS": str(config.snapshot_every_events)},
            credentials=credentials,
            config=config,
        )
    single = CommandServers(command_server, out_dir, token, config.clients)
    servers: CommandServers | ShardedCommandServers = single if sharded is None else sharded
    command_components = (
        {
            COMMAND_SERVER: ledger_component(
                COMMAND_SERVER, single.live, grpc_serving(single.live.address, credentials)
            )
        }
        if sharded is None
        else sharded.components
    )
    projector = LedgerService.projector(
        stack,
        out_dir,
        topic=topic,
        extra_env={
            **kafka_env,
            "LEDGER_DATABASE_URL": database_url,
            "LEDGER_PROJECTOR_GROUP": f"drill-{run_id}",
            "LEDGER_PROJECTOR_SESSION_TIMEOUT_MS": str(config.projector_session_timeout_ms),
        },
    )
    query_server = LedgerService.query_server(
        stack,
        out_dir,
        topic=topic,
        database_url=database_url,
        extra_env={**kafka_env, "LEDGER_METRICS_ADDR": f"{LOOPBACK}:{free_port()}"},
        secure=credentials,
    )
    services = (*servers.instances, projector, query_server)
    components = {
        **command_components,
        PROJECTOR: ledger_component(
            PROJECTOR, projector, lambda: projector_assigned(projector.address, config.partitions)
        ),
        QUERY_SERVER: ledger_component(
            QUERY_SERVER, query_server, grpc_serving(query_server.address, credentials)
        ),
        KAFKA: Component(KAFKA, stack.kafka, stack.kafka.log_file, _always_ok)
        if cluster is None
        else cluster_component(KAFKA, cluster, topic),
        POSTGRES: Component(POSTGRES, stack.postgres, stack.postgres.log_file, _always_ok),
    }

    async def all_healthy() -> bool:
        for component in components.values():
            if component.held or not component.service.is_running():
                return False
        probes = await asyncio.gather(*(asyncio.to_thread(c.healthy) for c in components.values()))
        return all(probes)

    async def wait_healthy(deadline_s: float) -> bool:
        end = time.monotonic() + deadline_s
        while not await all_healthy():
            if time.monotonic() > end:
                return False
            await asyncio.sleep(0.2)
        return True

    supervisor = Supervisor(components, journal, deadline_s=config.healthy_deadline_s, say=say)
    injector = FaultInjector(components, supervisor, journal, config, healthy=all_healthy, say=say)
    injector.actions = {
        TAKEOVER: Takeover(components[COMMAND_SERVER], single, credentials, journal, config),
        COMMAND_SERVER_PAUSE: Pause(components[COMMAND_SERVER], journal, config),
        KAFKA_PAUSE: Pause(components[KAFKA], journal, config),
        SNAPSHOT_RESTART: SnapshotRestart(components[COMMAND_SERVER], journal, journal, config),
    }
    if sharded is not None:
        injector.actions[SHARD_PAIR] = ShardPairKill(components, journal, journal, config)
    if cluster is not None:
        injector.actions[LEADER_BROKER] = LeaderKill(cluster, topic, journal, config)
    reads = ReadStats()
    errors: list[str] = []
    fold: Fold | None = None
    commands: CommandChecks | None = None
    read_model: ReadModelChecks | None = None
    dead_letter_records: int | None = None
    dead_letter_rows: int | None = None
    caught_up_s: float | None = None
    records: list[LogRecord] = []
    watch: TransferWatch | None = None
    sagas: SagaLog | None = None
    sagas_waited_s: float | None = None
    read_back: Snapshot | None = None
    load_started = load_ended = journal.now()
    tasks: list[asyncio.Task[None]] = []
    supervising: asyncio.Task[None] | None = None
    channels: list[grpc.aio.Channel] = []
    try:
        for service in services:
            await asyncio.to_thread(service.start)
        if not await wait_healthy(config.healthy_deadline_s):
            raise StackError("the Ledger processes did not all become healthy")
        say("command server, projector and query server are up; load starts")
        supervising = asyncio.create_task(supervisor.run(), name="supervisor")

        book = Book()
        stop_clients = asyncio.Event()
        stop_readers = asyncio.Event()
        give_up = GiveUp()
        servers.connect()
        query_channel = query_server.channel(token, CHANNEL_OPTIONS)
        channels.append(query_channel)
        query = qry_grpc.QueryServiceStub(query_channel)
        watch = TransferWatch(query, book, config)
        clients = []
        for index in range(config.clients):
            clients.append(
                Client(
                    index,
                    functools.partial(servers.stub, index),
                    book=book,
                    journal=journal,
                    config=config,
                    run_id=run_id,
                    stop=stop_clients,
                    give_up=give_up,
                    watch=watch,
                )
            )
        readers = [
            Reader(
                index,
                query,
                book=book,
                config=config,
                stop=stop_readers,
                stats=reads,
            )
            for index in range(config.readers)
        ]
        client_tasks = [asyncio.create_task(c.run(), name=f"client-{c.index}") for c in clients]
        reader_tasks = [asyncio.create_task(r.run(), name="reader") for r in readers]
        tasks = [*client_tasks, *reader_tasks]

        load_started = journal.now()
        await injector.run(load_started + config.seconds)
        remaining = load_started + config.seconds - journal.now()
        if remaining > 0:
            await asyncio.sleep(remaining)
        load_ended = journal.now()
        stop_clients.set()
        say(
            f"load over after {load_ended - load_started:.1f}s: {len(journal)} commands; "
            "waiting until everything is healthy, then clients finish what they have in hand"
        )
        if not await wait_healthy(config.healthy_deadline_s):
            errors.append("not everything was healthy after the load")
        give_up.set(time.monotonic() + config.resolve_deadline_s)
        await asyncio.gather(*client_tasks)
        await watch.drain()
        acknowledged = journal.acknowledged()
        say(
            f"{len(acknowledged)} commands acknowledged, "
            f"{sum(1 for r in journal if r.status is Status.UNRESOLVED)} unresolved; "
            f"sending {min(config.resend_sample, len(acknowledged))} of them again"
        )
        post = GiveUp()
        post.set(time.monotonic() + config.resolve_deadline_s)
        await resend_acknowledged(
            acknowledged,
            functools.partial(servers.stub, 0),
            journal=journal,
            config=config,
            give_up=post,
        )
        stop_readers.set()
        await asyncio.gather(*reader_tasks)
        supervisor.stop()
        await supervising

        say("reading the whole log back (read_committed)")
        try:
            ended = await wait_sagas_ended(
                functools.partial(read_log, bootstrap, stack.registry_url, topic),
                deadline_s=config.saga_end_deadline_s,
            )
            records, sagas, sagas_waited_s = ended.records, ended.sagas, ended.waited_s
            say(f"{len(sagas.in_flight)} sagas in flight after {sagas_waited_s:.1f}s")
            fold = fold_log(records)
            commands = check_commands(journal, fold)
            last_offsets: dict[int, int] = {}
            for record in records:
                last_offsets[record.partition] = record.offset
            say(f"{len(records)} records; waiting for the projector to apply them all")
            caught_up_s = await wait_caught_up(
                database_url, topic, last_offsets, deadline_s=config.catch_up_deadline_s
            )
            read_back = await snapshot(database_url, topic)
            read_model = check_read_model(fold, read_back)
            dead_letter_rows = read_back.dead_letters
            dead_letter_records = await asyncio.to_thread(count_records, bootstrap, f"{topic}.dlq")
        except (LogUnreadable, NotCaughtUp) as error:
            errors.append(str(error))
    except Exception as error:
        errors.append(f"the drill failed: {error!r}")
        say("".join(traceback.format_exception(error)))
    finally:
        supervisor.stop()
        for task in tasks:
            task.cancel()
        if watch is not None:
            watch.cancel()
        if supervising is not None:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await supervising
        await asyncio.gather(*tasks, return_exceptions=True)
        for channel in channels:
            await channel.close()
        await servers.close()
        for service in (query_server, projector):
            await asyncio.to_thread(service.stop)
        await asyncio.to_thread(servers.stop_all)
        # The stack (and the cluster) is left as it was found: running and ready.
        if cluster is not None:
            await restore(cluster)
        for component in (components[KAFKA], components[POSTGRES]):
            if not component.service.is_running():
                await asyncio.to_thread(component.service.start)
        if not keep_database:
            with contextlib.suppress(Exception):
                await drop_database(stack, database)

    report = build_report(
        config=config,
        journal=journal,
        faults=injector.faults,
        crashes=supervisor.crashes,
        unrecovered=injector.unrecovered,
        fold=fold,
        commands=commands,
        read_model=read_model,
        reads=reads,
        dead_letter_records=dead_letter_records,
        dead_letter_rows=dead_letter_rows,
        timing=Timing(load_started, load_ended, journal.now(), caught_up_s),
        errors=errors,
        topic=topic,
        sagas=saga_report(journal, sagas, watch.followed if watch else None, sagas_waited_s),
    )
    journal.write(out_dir / "journal.jsonl")
    write_json(report, out_dir / "report.json")
    say(f"journal: {out_dir / 'journal.jsonl'}, report: {out_dir / 'report.json'}")
    print(render_text(report), flush=True)
    return DrillResult(report, journal, records, read_back)
