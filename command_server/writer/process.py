"""The writer process's loop: rebuild the state, then take batches until told to stop."""

from __future__ import annotations

import logging
import signal
from multiprocessing.connection import Connection

from command_server.background_snapshots import BackgroundSnapshots
from command_server.settings import Settings
from command_server.startup import connect, rebuild
from command_server.writer.batcher import Batcher
from command_server.writer.protocol import KNOWN_START_FAILURES, PROBE, ready, start_failed
from ledger.telemetry.logs import configure_logging

log = logging.getLogger(__name__)


def writer_main(conn: Connection, settings: Settings) -> None:
    """Entry point of the writer process (spawned by `WriterProcess`)."""
    # The gRPC process decides when to stop (it still has answers to deliver): a Ctrl-C or a
    # SIGTERM sent to the whole process group must not cut the writer short.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    configure_logging("command-server")
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
    batcher = Batcher(model, store, shard)
    background = BackgroundSnapshots(snapshots) if snapshots is not None else None
    if background is not None:
        background.note(replayed)
    try:
        while True:
            if background is not None and background.due:
                background.start(model)
            if not conn.poll():
                # Idle: the next batch's transaction can begin now rather than when it arrives.
                store.prepare()
            try:
                message = conn.recv()
            except EOFError:
                log.error("the gRPC process went away; the writer stops")
                break
            if message is None:
                if background is not None:
                    background.write_final(model)
                break
            reply = batcher.probe() if message == PROBE else batcher.commit(*message)
            if not _send(conn, reply):
                break
            if background is not None:
                background.note(batcher.appended)
    finally:
        if background is not None:
            background.close()
        store.close()


def _send(conn: Connection, message: object) -> bool:
    try:
        conn.send(message)
    except (BrokenPipeError, ConnectionResetError):
        return False
    return True
