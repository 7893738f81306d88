"""What crosses the pipe between the gRPC process and the writer process, kept to plain tuples.

Pickling tuples of strings and ints is an order of magnitude cheaper than pickling frozen
dataclasses or exceptions, and the pipe carries every command and every answer.
"""

from __future__ import annotations

from dataclasses import fields
from operator import attrgetter
from typing import Any, NamedTuple, TypeAlias

from command_server.event_store import AppendFailed
from ledger.domain.commands import CloseAccount, Command, Deposit, OpenAccount, Transfer, Withdraw
from ledger.domain.rejection import Rejection, RejectionKind

_COMMAND_TYPES: tuple[type[Command], ...] = (OpenAccount, Deposit, Withdraw, Transfer, CloseAccount)
_TAGS: dict[type[Command], int] = {kind: tag for tag, kind in enumerate(_COMMAND_TYPES)}
_VALUES = {kind: attrgetter(*(f.name for f in fields(kind))) for kind in _COMMAND_TYPES}

PackedCommand: TypeAlias = tuple[int, tuple[Any, ...]]
PackedVerdict: TypeAlias = tuple[Any, ...]


class NotServing(RuntimeError):
    """The server is starting, shutting down or was fenced: try again, possibly elsewhere."""


class CommandIdReused(RuntimeError):
    """A command id that already named a different command."""


class WriterFailed(RuntimeError):
    """The writer process failed in a way this module has no better name for."""


class Ack(NamedTuple):
    """A command's successful answer: its (source) account's version and consistency token."""

    version: int
    token: str


def pack_command(command: Command) -> PackedCommand:
    kind = type(command)
    return _TAGS[kind], _VALUES[kind](command)


def unpack_command(packed: PackedCommand) -> Command:
    tag, values = packed
    return _COMMAND_TYPES[tag](*values)


# Verdict tags: the first item of a packed verdict.
ACK, REJECTED, REUSED, APPEND_FAILED, NOT_SERVING, FAILED = range(6)


def unpack_verdict(packed: PackedVerdict) -> Ack | BaseException:
    """The answer for the caller: an Ack, or the exception the servicer maps to a status."""
    tag = packed[0]
    if tag == ACK:
        return Ack(packed[1], packed[2])
    if tag == REJECTED:
        return Rejection(RejectionKind(packed[1]), packed[2])
    if tag == REUSED:
        return CommandIdReused(packed[1])
    if tag == APPEND_FAILED:
        return AppendFailed(packed[1])
    if tag == NOT_SERVING:
        return NotServing(packed[1])
    return WriterFailed(packed[1])
