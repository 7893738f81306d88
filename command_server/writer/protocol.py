"""Everything that crosses the pipe between the gRPC process and the writer, both ways.

gRPC process → writer: a batch (its packed commands and the spans of them that are atomic),
PROBE (is Kafka taking commits?), or None to stop.
Writer → gRPC process: first one start message (ready, or failed), then one `BatchReply` per
batch or probe: what the writer learnt about Kafka (`Health`), why, and one packed verdict per
command (none for a probe).

Everything is a plain tuple of strings and ints: the pipe carries every command and every
answer, and pickling such tuples is much cheaper than pickling frozen dataclasses or exceptions
(docs/performance.md, "What changed in `command_server/`"). Exceptions are rebuilt on arrival.
"""

from __future__ import annotations

from dataclasses import fields
from operator import attrgetter
from typing import Any, NamedTuple, TypeAlias

from command_server.event_store import AppendFailed, UnreadableLog
from command_server.topic import UnsafeTopic
from command_server.write_model import Outcome
from ledger.domain.commands import (
    CloseAccount,
    Command,
    Deposit,
    EraseOwner,
    OpenAccount,
    Transfer,
    Withdraw,
)
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.environment import SettingsError
from ledger.events.schema_store import IncompatibleSchema

# --- Errors the gRPC side raises from what crosses the pipe ----------------------------------


class NotServing(RuntimeError):
    """The server is starting, shutting down or was fenced: try again, possibly elsewhere."""


class CommandIdReused(RuntimeError):
    """A command id that already named a different command."""


class WriterFailed(RuntimeError):
    """The writer process failed in a way this module has no better name for."""


class NotApplied(RuntimeError):
    """A command of an atomic batch that was not applied because another one of it failed."""


KNOWN_START_FAILURES: dict[str, type[Exception]] = {
    "UnsafeTopic": UnsafeTopic,
    "AppendFailed": AppendFailed,
    "UnreadableLog": UnreadableLog,
    "SettingsError": SettingsError,
    "IncompatibleSchema": IncompatibleSchema,
}
"""Start-up failures the composition root reports as "cannot start" (exit code 2), by name."""

# --- Commands ---------------------------------------------------------------------------------

_COMMAND_TYPES: tuple[type[Command], ...] = (
    OpenAccount,
    Deposit,
    Withdraw,
    Transfer,
    CloseAccount,
    EraseOwner,
)
_TAGS: dict[type[Command], int] = {kind: tag for tag, kind in enumerate(_COMMAND_TYPES)}
_VALUES = {kind: attrgetter(*(f.name for f in fields(kind))) for kind in _COMMAND_TYPES}

PackedCommand: TypeAlias = tuple[int, tuple[Any, ...]]
"""(the command's type tag, its field values in declaration order)"""

AtomicSpan: TypeAlias = tuple[int, int]
"""(start, stop): the commands batch[start:stop] are applied all together or not at all."""

Batch: TypeAlias = tuple[list[PackedCommand], list[AtomicSpan]]
"""What the gRPC process sends for one transaction: the commands, in order, and their atomic
spans (disjoint, in order; a command outside every span succeeds or fails alone)."""


def command_tag(kind: type[Command]) -> int:
    """The tag a packed command of type `kind` carries (for packing without the dataclass)."""
    return _TAGS[kind]


def pack_command(command: Command) -> PackedCommand:
    kind = type(command)
    return _TAGS[kind], _VALUES[kind](command)


def unpack_command(packed: PackedCommand) -> Command:
    tag, values = packed
    return _COMMAND_TYPES[tag](*values)


# --- Verdicts ---------------------------------------------------------------------------------

PackedVerdict: TypeAlias = tuple[Any, ...]
"""(a verdict tag, then what that verdict carries); a success with one position is
(ACK, version, token, partition, offset), with any other number (ACK, version, token,
((partition, offset), ...))"""

# Verdict tags: the first item of a packed verdict.
ACK, REJECTED, REUSED, APPEND_FAILED, NOT_SERVING, FAILED, NOT_APPLIED = range(7)


class Ack(NamedTuple):
    """A command's successful answer: its (source) account's version and consistency token,
    and the token's (partition, offset) pairs, so that a batch's union of tokens is taken
    without decoding each one (docs/performance.md, "What changed in the batch path")."""

    version: int
    token: str
    positions: tuple[tuple[int, int], ...] = ()


def pack_verdict(verdict: Outcome | BaseException | None) -> PackedVerdict:
    """A command's verdict for the pipe; None means the batch reached none for it (a bug)."""
    if isinstance(verdict, Outcome):
        positions = verdict.positions
        if len(positions) == 1:
            # Nearly every command: one position, as two plain ints (less to build and pickle).
            ((partition, offset),) = positions.items()
            return (ACK, verdict.version, verdict.token, partition, offset)
        return (ACK, verdict.version, verdict.token, tuple(positions.items()))
    if isinstance(verdict, Rejection):
        return (REJECTED, verdict.kind.value, verdict.message)
    if isinstance(verdict, CommandIdReused):
        return (REUSED, str(verdict))
    if isinstance(verdict, AppendFailed):
        return (APPEND_FAILED, str(verdict))
    if isinstance(verdict, NotServing):
        return (NOT_SERVING, str(verdict))
    if isinstance(verdict, NotApplied):
        return (NOT_APPLIED, str(verdict))
    if verdict is None:
        return (FAILED, "no verdict reached for a command in the batch")
    return (FAILED, str(verdict))


def unpack_verdict(packed: PackedVerdict) -> Ack | BaseException:
    """The answer for the caller: an Ack, or the exception the servicer maps to a status."""
    tag = packed[0]
    if tag == ACK:
        if len(packed) == 5:
            return Ack(packed[1], packed[2], ((packed[3], packed[4]),))
        return Ack(*packed[1:])
    if tag == REJECTED:
        return Rejection(RejectionKind(packed[1]), packed[2])
    if tag == REUSED:
        return CommandIdReused(packed[1])
    if tag == APPEND_FAILED:
        return AppendFailed(packed[1])
    if tag == NOT_SERVING:
        return NotServing(packed[1])
    if tag == NOT_APPLIED:
        return NotApplied(packed[1])
    return WriterFailed(packed[1])


# --- Replies to a batch or a probe -----------------------------------------------------------

PROBE = "probe"
"""Sent instead of a batch while idle: the writer answers with what it knows of Kafka."""
TRANSFERS = "transfers"
"""Sent as (TRANSFERS, transfer ids) by calls waiting for cross-shard transfers: the reply is
a probe's, whose verdicts are (transfer id, state, reason) of each (transfers_in_flight.py)."""

# What a reply says about Kafka (the gRPC process's health follows it).
UNCHANGED = 0
"""No transaction was tried (every command was answered from memory or refused)."""
COMMITTING = 1
"""A transaction committed, or a probe found Kafka ready: SERVING."""
STALLED = 2
"""The writer cannot commit now (a failed append, a producer being re-initialised, a model
that must catch up with the log first): NOT_SERVING, and the writer goes on trying."""
FENCED = 3
"""Another instance took the shard over: stop (exit 3)."""
BROKEN = 4
"""The writer no longer knows what the log holds: stop."""

Health: TypeAlias = int

BatchReply: TypeAlias = tuple[Health, str, list[PackedVerdict]]
"""(what the writer learnt about Kafka, why (for a change of health), one verdict per command
of the batch)"""

# --- Start messages: the writer's first message, once its state is rebuilt or it failed -------

READY = "ready"
START_FAILED = "failed"

StartMessage: TypeAlias = tuple[Any, ...]
"""(READY, partitions, accounts, events replayed) or (START_FAILED, failure's name, text)"""


def ready(partitions: int, accounts: int, events: int) -> StartMessage:
    return (READY, partitions, accounts, events)


def start_failed(exc: BaseException) -> StartMessage:
    """A known start failure travels by name; anything else as its repr, named ""."""
    if isinstance(exc, tuple(KNOWN_START_FAILURES.values())):
        return (START_FAILED, type(exc).__name__, str(exc))
    return (START_FAILED, "", f"{exc!r}")


def unpack_start(message: StartMessage) -> tuple[int, int, int]:
    """(partitions, accounts, events replayed) of a ready writer; raises what made it fail."""
    if message[0] == READY:
        _, partitions, accounts, events = message
        return partitions, accounts, events
    _, kind, text = message
    raise KNOWN_START_FAILURES.get(kind, WriterFailed)(text)
