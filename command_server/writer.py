"""The writer process: owns the shard's write model and its transactional producer.

The gRPC process hands it batches of commands over a pipe; it decides them in order against the
committed state overlaid with what earlier commands of the same batch changed, appends the
resulting events in one Kafka transaction, folds them into the write model once committed, and
answers with one verdict per command. Every caller (including the rejected ones, whose verdict may
rest on the pending state) is answered only after the transaction committed; if it aborts, all of
them get the error and the pending state is dropped (design, decision 3).

Why a process of its own: deciding, encoding and producing are CPU work in Python. In the gRPC
process they would share one interpreter lock with gRPC's own per-call work; here they run on
the other core, and the gRPC process only forwards commands and answers.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from multiprocessing.connection import Connection

from command_server.background_snapshots import BackgroundSnapshots
from command_server.event_store import AppendFailed, EventStore, Fenced
from command_server.settings import Settings
from command_server.shards import Shard
from command_server.startup import connect, rebuild
from command_server.topic import UnsafeTopic
from command_server.wire import (
    ACK,
    APPEND_FAILED,
    FAILED,
    NOT_SERVING,
    REJECTED,
    REUSED,
    CommandIdReused,
    PackedCommand,
    PackedVerdict,
    unpack_command,
)
from command_server.write_model import Outcome, WriteModel
from ledger.domain.account import Account
from ledger.domain.commands import Command, accounts_of, fingerprint
from ledger.domain.decider import decide, evolve
from ledger.domain.rejection import Rejection
from ledger.environment import SettingsError
from ledger.events.records import Event
from ledger.telemetry.logs import configure_logging

log = logging.getLogger(__name__)

# Messages from the writer: ("ready", partitions, accounts, events), ("failed", kind, message).
READY = "ready"
START_FAILED = "failed"
# Start-up failures the composition root reports as "cannot start" (exit code 2).
KNOWN_START_FAILURES: dict[str, type[Exception]] = {
    "UnsafeTopic": UnsafeTopic,
    "AppendFailed": AppendFailed,
    "SettingsError": SettingsError,
}

BatchReply = tuple[str | None, list[PackedVerdict]]
"""(why the shard was fenced, or None; one verdict per command of the batch)"""


def utc_now() -> datetime:
    now = datetime.now(UTC)
    return now.replace(microsecond=now.microsecond // 1000 * 1000)


@dataclass(slots=True)
class _Submission:
    command: Command
    # Computed only when needed (a retry or a duplicate in the batch): `decide` hashes the
    # command itself for its events, so the common path pays for one fingerprint, not two.
    _fingerprint: str | None = None

    @property
    def fingerprint(self) -> str:
        if self._fingerprint is None:
            self._fingerprint = fingerprint(self.command)
        return self._fingerprint


_Verdict = Outcome | BaseException | None


@dataclass(slots=True)
class _Decisions:
    verdicts: list[_Verdict]
    # Events to append, each with its partition, and the index of the submission behind it.
    events: list[tuple[Event, int]]
    authors: list[int]
    # The state each event leaves its account in, already computed while deciding.
    states: list[Account]
    # A duplicate inside the batch (index -> index of its original) shares the original's verdict.
    aliases: dict[int, int]


class Batcher:
    """Decides and commits one batch at a time; runs in the writer process."""

    def __init__(
        self,
        model: WriteModel,
        store: EventStore,
        shard: Shard,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._model = model
        self._store = store
        self._shard = shard
        self._clock = clock
        self._fenced: Fenced | None = None
        self.appended = 0
        """Events the last batch appended."""

    def commit(self, packed: list[PackedCommand]) -> BatchReply:
        batch = [_Submission(unpack_command(command)) for command in packed]
        if self._fenced is not None:
            refusal = (NOT_SERVING, f"this shard was taken over: {self._fenced}")
            return str(self._fenced), [refusal] * len(batch)
        decisions = self._decide(batch)
        verdicts, events = decisions.verdicts, decisions.events
        self.appended = 0
        if events:
            try:
                offsets = self._store.append(events)
            except Fenced as exc:
                self._fenced = exc
                return str(exc), [(NOT_SERVING, f"this shard was taken over: {exc}")] * len(batch)
            except AppendFailed as exc:
                log.warning("batch of %d commands aborted: %s", len(batch), exc)
                return None, [(APPEND_FAILED, str(exc))] * len(batch)
            except Exception as exc:
                log.exception("unexpected failure appending a batch")
                return None, [(FAILED, f"appending the batch failed: {exc!r}")] * len(batch)
            self.appended = len(events)
            apply = self._model.apply_decided
            for (event, partition), offset, state in zip(
                events, offsets, decisions.states, strict=True
            ):
                apply(event, state, partition, offset)
            for index in set(decisions.authors):
                verdicts[index] = self._model.outcome(batch[index].command.command_id)
        for duplicate, original in decisions.aliases.items():
            verdicts[duplicate] = verdicts[original]
        return None, [_pack(verdict) for verdict in verdicts]

    def _decide(self, batch: list[_Submission]) -> _Decisions:
        now = self._clock()
        pending: dict[str, Account] = {}
        first_of: dict[str, int] = {}
        decisions = _Decisions([None] * len(batch), [], [], [], {})
        verdicts, events, authors, states, aliases = (
            decisions.verdicts,
            decisions.events,
            decisions.authors,
            decisions.states,
            decisions.aliases,
        )
        committed = self._model.accounts
        partition_of = self._shard.partition_of
        for index, sub in enumerate(batch):
            command_id = sub.command.command_id
            known = self._model.outcome(command_id)
            if known is not None:
                verdicts[index] = _retried(known, sub)
                continue
            if command_id in first_of:
                original = first_of[command_id]
                if batch[original].fingerprint == sub.fingerprint:
                    aliases[index] = original
                else:
                    verdicts[index] = _reused(sub.command)
                continue
            current = {
                a: acc
                for a in accounts_of(sub.command)
                if (acc := pending.get(a) or committed.get(a)) is not None
            }
            try:
                decided = decide(sub.command, current, now)
            except Rejection as exc:
                verdicts[index] = exc
                continue
            first_of[command_id] = index
            for event in decided:
                account_id = event.account_id
                state = evolve(current.get(account_id), event)
                pending[account_id] = current[account_id] = state
                events.append((event, partition_of(account_id)))
                authors.append(index)
                states.append(state)
        return decisions


def _reused(command: Command) -> CommandIdReused:
    return CommandIdReused(
        f"command_id {command.command_id!r} was already used for a different command; "
        "a retry must repeat the original request exactly, a new command needs a new command_id"
    )


def _retried(known: Outcome, sub: _Submission) -> Outcome | CommandIdReused:
    """A command whose id has a recorded outcome: the same answer again, or a refusal."""
    return known if known.fingerprint == sub.fingerprint else _reused(sub.command)


def _pack(verdict: _Verdict) -> PackedVerdict:
    if isinstance(verdict, Outcome):
        return (ACK, verdict.version, verdict.token)
    if isinstance(verdict, Rejection):
        return (REJECTED, verdict.kind.value, verdict.message)
    if isinstance(verdict, CommandIdReused):
        return (REUSED, str(verdict))
    return (FAILED, "no verdict reached for a command in the batch")


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
        _send(conn, (START_FAILED, type(exc).__name__, str(exc)))
        return
    except BaseException as exc:
        log.exception("the writer could not rebuild its state")
        _send(conn, (START_FAILED, "", f"{exc!r}"))
        return
    if not _send(conn, (READY, shard.partitions, len(model.accounts), replayed)):
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
            fenced, verdicts = batcher.commit(message)
            if not _send(conn, (fenced, verdicts)):
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
