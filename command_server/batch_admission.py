"""A batch's commands checked and packed for the pipe straight from their protobuf messages.

ExecuteBatch checks every command as its unary call would (`requests.command_of`,
`require_command_id`, `require_fields`) and sends the writer packed tuples
(`protocol.pack_command`). Done through a domain `Command` per command that was most of the gRPC
process's time under batch load (docs/performance.md, "Batches (issue 22)"). `packed_if_valid`
reads the message's fields, checks them with plain string operations and builds the packed tuple
itself, without the dataclass, the datetime of the id's time or the field-by-field dispatch of
`require_fields`; whatever it is not sure passes every check (any failure, and any input it does
not know) it leaves to `admitted`, the general path, whose refusal and message are thus the
unary call's by construction. tests/unit/test_batch_admission.py holds the two equal.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from command_server import requests
from command_server.writer.protocol import PackedCommand, command_tag, pack_command

# The pattern command_id_millis matches, without the time it then parses and its call.
from ledger.command_ids import _CANONICAL_V7
from ledger.domain.commands import CloseAccount, Deposit, OpenAccount, Transfer, Withdraw
from ledger.domain.money import known_currencies, plain_digits
from ledger.domain.rejection import Rejection
from ledger.domain.validation import (
    ACCOUNT_ID_PATTERN,
    MAX_MEMO_LENGTH,
    MAX_OWNER_LENGTH,
    MAX_REFERENCE_LENGTH,
    require_command_id,
    require_fields,
)
from ledger.v1 import commands_pb2 as pb

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)


def id_horizon(now: datetime, max_skew: timedelta) -> str:
    """What every command id of a batch checked at `now` is compared with: a canonical UUIDv7
    that sorts below it was made well before `now + max_skew` (`require_command_id` passes it).

    The 48-bit time leads a canonical UUIDv7 in fixed-width lowercase hex, so ids sort as their
    times do. The margin of 2 ms covers `millis_time`'s rounding through a float (under 0.1 ms
    for any 48-bit time) and the truncation to whole milliseconds here."""
    return _horizon((now - _EPOCH) // _MICROSECOND + max_skew // _MICROSECOND)


def id_horizon_now(max_skew_us: int) -> str:
    """`id_horizon(datetime.now(UTC), max_skew)` for a unary call, from the same clock's integer
    time: `datetime` arithmetic would cost it a few µs per call."""
    return _horizon(time.time_ns() // 1000 + max_skew_us)


class UnaryHorizon:
    """`id_horizon_now(max_skew_us)` for one servicer's calls, its text made once per
    millisecond: the horizon moves in whole milliseconds, and formatting it cost ~1 µs of the
    unary call, where comparing the millisecond costs a fifth of that."""

    __slots__ = ("_max_skew_us", "_millis", "_text")

    def __init__(self, max_skew_us: int) -> None:
        self._max_skew_us = max_skew_us
        self._millis = -1
        self._text = ""

    def at(self, micros: int) -> str:
        """The horizon of a call at `micros` (µs since the epoch): `_horizon`'s text."""
        millis = (micros + self._max_skew_us) // 1000
        if millis != self._millis:
            self._text = _horizon(micros + self._max_skew_us)
            self._millis = millis
        return self._text

    def now(self) -> str:
        return self.at(time.time_ns() // 1000)


def _horizon(micros: int) -> str:
    text = f"{max(micros // 1000 - 2, 0):012x}"
    return f"{text[:8]}-{text[8:]}"


@dataclass(frozen=True, slots=True)
class Admission:
    """A batch's commands checked: those that passed, packed, with their positions in the
    batch, and the refusal of each other position."""

    packed: list[PackedCommand]
    positions: Sequence[int]
    refusals: dict[int, Rejection]


def admitted(messages: Iterable[pb.Command], now: datetime, max_skew: timedelta) -> Admission:
    """Each message's command packed for the writer, or the Rejection its unary call would
    raise; ids are checked against `now`."""
    horizon = id_horizon(now, max_skew)
    packed_commands: list[PackedCommand] = []
    add = packed_commands.append
    refusals: dict[int, Rejection] = {}
    for message in messages:
        kind = message.WhichOneof("command")
        packed = None if kind is None else _PACKERS[kind](getattr(message, kind), horizon)
        if packed is None:
            try:
                packed = checked(message, now, max_skew)
            except Rejection as refusal:
                refusals[len(packed_commands) + len(refusals)] = refusal
                continue
        add(packed)
    count = len(packed_commands) + len(refusals)
    positions = [i for i in range(count) if i not in refusals] if refusals else range(count)
    return Admission(packed_commands, positions, refusals)


def checked(message: pb.Command, now: datetime, max_skew: timedelta) -> PackedCommand:
    """The general path: `message`'s command packed for the writer once it passed the unary
    call's checks, which raise their Rejection otherwise."""
    command = requests.command_of(message)
    require_command_id(command.command_id, now, max_skew)
    require_fields(command)
    return pack_command(command)


def packed_if_valid(message: pb.Command, horizon: str) -> PackedCommand | None:
    """`message`'s command packed for the writer if it passes every check of the unary call,
    its id sorting below `horizon` (`id_horizon`); None when it might not (`checked` decides
    then)."""
    kind = message.WhichOneof("command")
    if kind is None:
        return None
    return _PACKERS[kind](getattr(message, kind), horizon)


def packed_request(kind: str, request: Any, horizon: str) -> PackedCommand | None:
    """A unary call's request (`kind` names its field of the `Command` oneof) packed as
    `packed_if_valid` packs it in a batch; None when it might not pass (the general path
    decides then)."""
    return _PACKERS[kind](request, horizon)


# Each check below holds only where the unary call's check passes; a canonical UUIDv7 (36
# characters, printable) also passes require_fields' checks of an id.
_id = _CANONICAL_V7.fullmatch
_account = ACCOUNT_ID_PATTERN.fullmatch


def _positive_decimal(amount: str) -> bool:
    """What `require_positive_decimal` passes: ASCII digits, an optional fraction, not zero."""
    # Only digits and one dot: anything left after stripping zeros and dots is a digit 1-9.
    return plain_digits(amount) is not None and amount.strip("0.") != ""


def _open_account(request: pb.OpenAccountRequest, horizon: str) -> PackedCommand | None:
    command_id, account_id = request.command_id, request.account_id
    currency, owner = request.currency, request.owner
    if (
        command_id < horizon
        and _id(command_id)
        and _account(account_id)
        and currency in _CURRENCIES
        and len(owner) <= MAX_OWNER_LENGTH
        and owner.isprintable()
    ):
        return _OPEN, (command_id, account_id, currency, owner)
    return None


def _movement(tag: int) -> Callable[[Any, str], PackedCommand | None]:
    def packed(request: pb.DepositRequest | pb.WithdrawRequest, horizon: str) -> Any:
        command_id, account_id, amount = request.command_id, request.account_id, request.amount
        reference, memo = request.reference, request.memo
        version = _expected_version(request)
        if (
            command_id < horizon
            and _id(command_id)
            and _account(account_id)
            and _movement_fields(amount, version, reference, memo)
        ):
            return tag, (command_id, account_id, amount, version, reference, memo)
        return None

    return packed


def _transfer(request: pb.TransferRequest, horizon: str) -> PackedCommand | None:
    command_id, amount = request.command_id, request.amount
    source, destination = request.from_account_id, request.to_account_id
    reference, memo = request.reference, request.memo
    version = _expected_version(request)
    if (
        command_id < horizon
        and _id(command_id)
        and _account(source)
        and _account(destination)
        and source != destination
        and _movement_fields(amount, version, reference, memo)
    ):
        return _TRANSFER, (command_id, source, destination, amount, version, reference, memo)
    return None


def _close_account(request: pb.CloseAccountRequest, horizon: str) -> PackedCommand | None:
    command_id, account_id = request.command_id, request.account_id
    version = _expected_version(request)
    if (
        command_id < horizon
        and _id(command_id)
        and _account(account_id)
        and (version is None or version >= 1)
    ):
        return _CLOSE, (command_id, account_id, version)
    return None


def _expected_version(request: Any) -> int | None:
    version: int | None = request.expected_version if request.HasField("expected_version") else None
    return version


def _movement_fields(amount: str, version: int | None, reference: str, memo: str) -> bool:
    """A movement's amount, expected version, reference and memo pass their checks."""
    return (
        _positive_decimal(amount)
        and (version is None or version >= 1)
        and (not reference or _text(reference, MAX_REFERENCE_LENGTH))
        and (not memo or _text(memo, MAX_MEMO_LENGTH))
    )


def _text(text: str, limit: int) -> bool:
    return len(text) <= limit and text.isprintable()


_CURRENCIES = known_currencies()
_OPEN = command_tag(OpenAccount)
_TRANSFER = command_tag(Transfer)
_CLOSE = command_tag(CloseAccount)
# The `Command` oneof's fields (requests._OF_FIELD's), each with its packer.
_PACKERS: dict[str, Callable[[Any, str], PackedCommand | None]] = {
    "open_account": _open_account,
    "deposit": _movement(command_tag(Deposit)),
    "withdraw": _movement(command_tag(Withdraw)),
    "transfer": _transfer,
    "close_account": _close_account,
}
