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
    raw = bytearray(digest.digest()[:16])
    raw[6] = (raw[6] & 0x0F) | 0x50  # version 5
    raw[8] = (raw[8] & 0x3F) | 0x80  # RFC 4122 variant
    text = raw.hex()
    return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"


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


_Movement = TypeVar("_Movement", bound=MoneyDeposited | MoneyWithdrawn)
_Leg = TypeVar("_Leg", bound=TransferDebited | TransferCredited)
_set = object.__setattr__  # what a frozen dataclass's own __init__ sets its fields with


def decided_movement(
    kind: type[_Movement],
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
) -> _Movement:
    """`kind(...)` with these fields, without `__post_init__`'s check of `occurred_at`: for the
    decider's movements, whose time is made once per batch by `event_time`
    (ledger/domain/movements.py). The dataclass's construction was a fifth of deciding a
    Deposit; tests/unit/test_movements.py holds the two ways equal."""
    event = object.__new__(kind)
    _set_movement(
        event,
        event_id,
        account_id,
        version,
        command_id,
        command_fingerprint,
        occurred_at,
        balance_after,
        reference,
        memo,
        amount,
    )
    return event


def decided_leg(
    kind: type[_Leg],
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
    counterparty_id: str,
) -> _Leg:
    """`decided_movement` for a leg of a transfer within one shard, whose `transfer_id` is the
    Transfer command's id."""
    event = object.__new__(kind)
    _set_movement(
        event,
        event_id,
        account_id,
        version,
        command_id,
        command_fingerprint,
        occurred_at,
        balance_after,
        reference,
        memo,
        amount,
    )
    _set(event, "transfer_id", command_id)
    _set(event, "counterparty_id", counterparty_id)
    return event


def _set_movement(
    event: AccountEvent,
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
) -> None:
    _set(event, "event_id", event_id)
    _set(event, "account_id", account_id)
    _set(event, "version", version)
    _set(event, "command_id", command_id)
    _set(event, "command_fingerprint", command_fingerprint)
    _set(event, "occurred_at", occurred_at)
    _set(event, "balance_after", balance_after)
    _set(event, "reference", reference)
    _set(event, "memo", memo)
    _set(event, "amount", amount)
