"""The writer process's loop: rebuild the state, then take batches until told to stop."""

from __future__ import annotations

import gc
import logging
import signal
import sys
from multiprocessing.connection import Connection, wait
from typing import cast

from command_server.background_snapshots import BackgroundSnapshots
from command_server.event_store import EventStore
from command_server.saga_messages import saga_group, transfers_topic_name
from command_server.settings import Settings
from command_server.startup import connect, rebuild
from command_server.write_model import WriteModel
from command_server.writer.batcher import Batcher
from command_server.writer.protocol import (
    KNOWN_START_FAILURES,
    PROBE,
    UNCHANGED,
    Batch,
    BatchReply,
    ready,
    start_failed,
)
from command_server.writer.saga_inbox import SagaInbox
from command_server.writer.saga_steps import SagaSteps, transfer_states
from ledger.telemetry.logs import configure_logging

log = logging.getLogger(__name__)

SAGA_RETRY_SECONDS = 1.0
"""How soon a saga step that did not commit is tried again when nothing else happens."""
SWITCH_INTERVAL = 0.0005
"""Seconds a thread may hold the interpreter lock while another waits for it."""
FREEZE_EVERY_EVENTS = 10_000
"""Events folded in between two freezes of what the collector tracks (`_freeze`): each pause
walks what these events left, so fewer events make shorter pauses (4-9 ms against 25-36 ms
every 50,000; docs/performance.md, "The writer's stalls")."""


def writer_main(conn: Connection, settings: Settings) -> None:
    """Entry point of the writer process (spawned by `WriterProcess`)."""
    # The gRPC process decides when to stop (it still has answers to deliver): a Ctrl-C or a
    # SIGTERM sent to the whole process group must not cut the writer short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging("command-server")
    # The snapshot thread encodes while the main thread decides; each time the main thread comes
    # back from Kafka or the pipe it waits for the interpreter lock up to this long (Python's
    # default, 5 ms, let a snapshot stretch batches by hundreds of milliseconds:
    # docs/performance.md, "Snapshots and the interpreter lock").
    sys.setswitchinterval(SWITCH_INTERVAL)
    try:
        store, shard, snapshots = connect(settings)
        model, replayed = rebuild(settings, store, shard, snapshots)
    except tuple(KNOWN_START_FAILURES.values()) as exc:
        _send(conn, start_failed(exc))
        return
    except BaseException as exc:
        log.exception("the writer could not rebuild its state")
        _send(conn, start_failed(exc))
        return
    if not _send(conn, ready(shard.partitions, len(model.accounts), replayed)):
        store.close()
        if snapshots is not None:
            snapshots.close()
        return
    transfers = transfers_topic_name(settings.topic) if shard.sagas else None
    batcher = Batcher(model, store, shard, transfers_topic=transfers)
    background = BackgroundSnapshots(snapshots) if snapshots is not None else None
    if background is not None:
        background.note(replayed)
    inbox = saga = None
    if transfers is not None:
        inbox = SagaInbox(
            settings.kafka_bootstrap,
            settings.kafka_security,
            transfers,
            saga_group(settings.topic),
            {p: model.saga_positions.get(p, 0) for p in shard.owned_partitions},
        )
        saga = SagaSteps(model, batcher, shard, transfers, inbox.group_metadata)
        inbox.start()
    loop = _Loop(conn, model, store, batcher, background, inbox, saga)
    try:
        loop.run()
    finally:
        if inbox is not None:
            inbox.close()
        if background is not None:
            background.close()
        store.close()


class _Loop:
    """Messages from the pipe, one at a time, each answered in order; between two batches,
    what the writer does besides (snapshots, the collector, saga steps)."""

    def __init__(
        self,
        conn: Connection,
        model: WriteModel,
        store: EventStore,
        batcher: Batcher,
        background: BackgroundSnapshots | None,
        inbox: SagaInbox | None,
        saga: SagaSteps | None,
    ) -> None:
        self._conn = conn
        self._model = model
        self._store = store
        self._batcher = batcher
        self._background = background
        self._inbox = inbox
        self._saga = saga
        self._frozen_at = model.events_applied
        self._held: object = _NOTHING
        """A message taken from the pipe while a transaction was open, not acted on yet."""

    def run(self) -> None:
        conn, batcher, background = self._conn, self._batcher, self._background
        saga, inbox = self._saga, self._inbox
        while True:
            message, self._held = self._held, _NOTHING
            if message is _NOTHING:
                if background is not None and background.due:
                    background.start(self._model)
                if not conn.poll():
                    # Idle: the next batch's transaction can begin now rather than when it arrives.
                    self._store.prepare()
                    if (
                        saga is not None
                        and inbox is not None
                        and not _pipe_first(conn, inbox, saga)
                    ):
                        _saga_step(saga, inbox, background)
                        continue
                message = _receive(conn)
            if message is _GONE:
                log.error("the gRPC process went away; the writer stops")
                return
            if message is None:
                if background is not None:
                    background.write_final(self._model)
                return
            batch = _as_batch(message)
            if batch is not None:
                if not self._batches(batch):
                    return
                continue
            if message == PROBE:
                reply = batcher.probe()
            else:
                # (TRANSFERS, ids), asked every 20 ms while calls wait: answered from memory.
                _, transfer_ids = cast(tuple[str, list[str]], message)
                reply = (UNCHANGED, "", transfer_states(self._model, transfer_ids))
            if not _send(conn, reply):
                return

    def _batches(self, message: Batch) -> bool:
        """Answer the batch, and the batches after it for as long as each one waits in the pipe
        by the time the previous one's records are produced: each is decided and encoded while
        those records are on their way (`Batcher.decide_ahead`), and produced as soon as they
        are committed, before the previous batch's reply is packed and sent. False once the
        pipe is gone."""
        batcher, conn = self._batcher, self._conn
        opened = batcher.open(*message)
        while not isinstance(opened, tuple):
            following = ahead = None
            if conn.poll():
                self._held = _receive(conn)
                following = _as_batch(self._held)
                if following is not None:
                    ahead = batcher.decide_ahead(*following, after=opened)
            settled = batcher.settle(opened)
            appended = batcher.appended
            produced = None
            if ahead is not None:
                # No saga runs here (none decides ahead), so nothing between batches appends
                # while this transaction is open.
                self._held = _NOTHING
                produced = batcher.open_ahead(ahead)
            if not self._answered(batcher.reply(settled), appended):
                return False
            if following is None or ahead is None:
                return True
            opened = produced or batcher.open(*following)
        return self._answered(opened, batcher.appended)

    def _answered(self, reply: BatchReply, appended: int) -> bool:
        """Send a batch's reply, then what is due between batches (`appended`: the events its
        transaction appended); False if the pipe is gone."""
        if not _send(self._conn, reply):
            return False
        model, background, saga, inbox = self._model, self._background, self._saga, self._inbox
        if background is not None:
            background.note(appended)
        if model.events_applied - self._frozen_at >= FREEZE_EVERY_EVENTS and not (
            # A failed snapshot's exception holds a cycle until it is settled: not frozen.
            background is not None and background.writing
        ):
            self._frozen_at = _freeze(model.events_applied)
        if saga is not None and inbox is not None and (inbox.waiting or saga.retrying):
            # Between batches too, or a busy pipe would starve the saga.
            _saga_step(saga, inbox, background)
        if background is not None and background.due:
            background.start(model)
        return True


_NOTHING = object()
"""No message held (`_Loop._held`): None is a message, the one that stops the writer."""
_GONE = object()
"""What `_receive` gives once the gRPC process closed its end of the pipe."""


def _as_batch(message: object) -> Batch | None:
    """The message as a batch of commands, if it is one (a batch's first item is a list)."""
    if isinstance(message, tuple) and isinstance(message[0], list):
        return cast(Batch, message)
    return None


def _receive(conn: Connection) -> object:
    try:
        return conn.recv()
    except EOFError:
        return _GONE


def _freeze(events_applied: int) -> int:
    """Collect, then keep the cyclic collector off everything alive now.

    The model grows by a few tracked objects per command (outcomes, accounts), none in a cycle:
    left to itself the collector's full passes walked all of them every second or two, pausing
    the writer 26-120 ms each time under 10,000 commands/s, and collecting nothing
    (docs/performance.md, "The writer's stalls"). Frozen objects are still freed when their
    last reference goes; only a cycle formed among them later would stay, and the writer's
    state forms none. Each collection now walks only what was made since the last freeze."""
    gc.collect()
    gc.freeze()
    return events_applied


def _pipe_first(conn: Connection, inbox: SagaInbox, saga: SagaSteps) -> bool:
    """Wait for the pipe or the saga's inbox; True if the pipe has a message."""
    timeout = SAGA_RETRY_SECONDS if saga.retrying else None
    return conn in wait([conn, inbox.fileno()], timeout)


def _saga_step(saga: SagaSteps, inbox: SagaInbox, background: BackgroundSnapshots | None) -> None:
    saga.step(inbox.take())
    if saga.failed is not None:
        raise SystemExit(saga.failed)
    if background is not None:
        background.note(saga.appended)


def _send(conn: Connection, message: object) -> bool:
    try:
        conn.send(message)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True
