"""The facts the ledger records, one per change of one account.

These records are the contract between the command server (which writes them), the projector
(which reads them) and the Avro schema in `schemas/account_event.avsc` (how they are stored).
Money is always an `int` of minor units of the account's currency (cents for USD).
"""

from __future__ import annotations

import hashlib
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TypeAlias, TypeVar

from ledger.frozen_slots import Setter, slot_setter

_EVENT_ID_NAMESPACE = uuid.UUID("6f1c2a4e-5d0b-4c59-9a57-2f3f4e0d8b31")
_NAMESPACE_HASH = hashlib.sha1(_EVENT_ID_NAMESPACE.bytes, usedforsecurity=False)


def event_id_for(account_id: str, version: int) -> str:
    """The id of the event that takes `account_id` to `version`: the UUIDv5 of
    `<account_id>/<version>` in the ledger's namespace.

    Derived rather than random so that deciding stays a pure function and a retried write
    produces the same ids. Spelled out rather than `str(uuid.uuid5(...))`, which builds a UUID
    object per event, at a third of the cost (every event pays it; docs/performance.md,
    "What changed in the batch path"); tests/unit/test_event_ids.py holds it equal to uuid5.
    """
    digest = _NAMESPACE_HASH.copy()
    digest.update(f"{account_id}/{version}".encode())
    text = digest.hexdigest()
    # The version (5) replaces the 13th hex digit, the RFC 4122 variant (0b10) the top two bits
    # of the 17th: set on the text, without the bytes' round trip.
    return f"{text[:8]}-{text[8:12]}-5{text[13:16]}-{_VARIANT[text[16]]}{text[17:20]}-{text[20:32]}"


_VARIANT = {digit: "89ab"[int(digit, 16) & 0b11] for digit in "0123456789abcdef"}


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountEvent:
    """Fields every event carries. Use the `Event` union, not this base, in signatures."""

    event_id: str
    account_id: str
    version: int
    """The account's version after this event: 1 for AccountOpened, then +1 per event."""
    command_id: str
    command_fingerprint: str
    """Hash of the command's payload; a retry with the same command_id must match it."""
    occurred_at: datetime
    """UTC, millisecond precision (what Avro's timestamp-millis keeps)."""
    balance_after: int | None = None
    """The account's balance right after this event, in minor units. None in events written
    before the schema had it."""
    reference: str = ""
    """The client's own id of the movement (Deposit, Withdraw, Transfer: both legs carry it);
    empty when none was given, on every other event, and in events written before the schema
    had it."""
    memo: str = ""
    """The client's free-text note on the movement; empty like `reference`."""

    def __post_init__(self) -> None:
        # Enforced here so that what is decided is exactly what survives an encode/decode trip.
        if self.occurred_at.utcoffset() != timedelta(0):
            raise ValueError(f"occurred_at must be a UTC datetime, got {self.occurred_at!r}")
        if self.occurred_at.microsecond % 1000:
            raise ValueError(f"occurred_at must have millisecond precision: {self.occurred_at!r}")


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountOpened(AccountEvent):
    """The account came into existence with a zero balance."""

    currency: str
    """ISO 4217 code; every amount on the account is in minor units of it."""
    owner: str
    """Plaintext only as decided and in events written before owners were sealed: the event
    store seals it into `owner_sealed` and writes it empty (ledger/personal_data.py)."""
    owner_sealed: bytes = b""
    """The owner sealed with the account's data key; empty in events written before sealing."""


@dataclass(frozen=True, slots=True, kw_only=True)
class MoneyDeposited(AccountEvent):
    """Money was paid into the account."""

    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class MoneyWithdrawn(AccountEvent):
    """Money was paid out of the account."""

    amount: int


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferDebited(AccountEvent):
    """Money left this account for `counterparty_id`; the matching TransferCredited has the same
    `transfer_id` (the Transfer command's id)."""

    amount: int
    transfer_id: str
    counterparty_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferCredited(AccountEvent):
    """Money arrived on this account from `counterparty_id`."""

    amount: int
    transfer_id: str
    counterparty_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferSent(AccountEvent):
    """Money left this account for `counterparty_id`, an account of another shard: a cross-shard
    transfer. The money is in flight until the counterparty's TransferCredited with the same
    `transfer_id`, or this account's TransferRefunded."""

    amount: int
    transfer_id: str
    counterparty_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class TransferRefunded(AccountEvent):
    """The money of this account's TransferSent with the same `transfer_id` came back: the
    counterparty refused the credit for `reason`."""

    amount: int
    transfer_id: str
    counterparty_id: str
    reason: str


@dataclass(frozen=True, slots=True, kw_only=True)
class AccountClosed(AccountEvent):
    """The account was closed at a zero balance; only OwnerErased may follow it."""


@dataclass(frozen=True, slots=True, kw_only=True)
class OwnerErased(AccountEvent):
    """The owner's personal data was erased: the account's data key is forgotten, so its sealed
    owner can no longer be opened. Balance and history are unchanged."""


Event: TypeAlias = (
    AccountOpened
    | MoneyDeposited
    | MoneyWithdrawn
    | TransferDebited
    | TransferCredited
    | AccountClosed
    | OwnerErased
    | TransferSent
    | TransferRefunded
)


_Money = TypeVar(
    "_Money", bound=MoneyDeposited | MoneyWithdrawn | TransferDebited | TransferCredited
)
_SET_EVENT_ID = slot_setter(AccountEvent, "event_id")
_SET_ACCOUNT_ID = slot_setter(AccountEvent, "account_id")
_SET_VERSION = slot_setter(AccountEvent, "version")
_SET_COMMAND_ID = slot_setter(AccountEvent, "command_id")
_SET_FINGERPRINT = slot_setter(AccountEvent, "command_fingerprint")
_SET_OCCURRED_AT = slot_setter(AccountEvent, "occurred_at")
_SET_BALANCE_AFTER = slot_setter(AccountEvent, "balance_after")
_SET_REFERENCE = slot_setter(AccountEvent, "reference")
_SET_MEMO = slot_setter(AccountEvent, "memo")
# Each event type declares its own slots for its own fields.
_MONEY = (MoneyDeposited, MoneyWithdrawn, TransferDebited, TransferCredited)
_SET_AMOUNT: dict[type[AccountEvent], Setter] = {
    kind: slot_setter(kind, "amount") for kind in _MONEY
}
_SET_TRANSFER_ID: dict[type[AccountEvent], Setter] = {
    kind: slot_setter(kind, "transfer_id") for kind in _MONEY[2:]
}
_SET_COUNTERPARTY_ID: dict[type[AccountEvent], Setter] = {
    kind: slot_setter(kind, "counterparty_id") for kind in _MONEY[2:]
}


def decided_movement(
    kind: type[_Money],
    event_id: str,
    account_id: str,
    version: int,
    command_id: str,
    command_fingerprint: str,
    occurred_at: datetime,
    balance_after: int,
    reference: str,
    memo: str,
    amount: int,
    counterparty_id: str | None = None,
) -> _Money:
    """`kind(...)` with these fields, without `__post_init__`'s check of `occurred_at`: for the
    decider's movements, whose time is made once per batch by `event_time`
    (ledger/domain/movements.py). A leg of a transfer within one shard names its
    `counterparty_id`, and its `transfer_id` is the command's id. Keyword construction of the
    dataclass took three times as long; tests/unit/test_movements.py holds the two equal."""
    event = object.__new__(kind)
    _SET_EVENT_ID(event, event_id)
    _SET_ACCOUNT_ID(event, account_id)
    _SET_VERSION(event, version)
    _SET_COMMAND_ID(event, command_id)
    _SET_FINGERPRINT(event, command_fingerprint)
    _SET_OCCURRED_AT(event, occurred_at)
    _SET_BALANCE_AFTER(event, balance_after)
    _SET_REFERENCE(event, reference)
    _SET_MEMO(event, memo)
    _SET_AMOUNT[kind](event, amount)
    if counterparty_id is not None:
        _SET_TRANSFER_ID[kind](event, command_id)
        _SET_COUNTERPARTY_ID[kind](event, counterparty_id)
    return event
