"""What the read model answers: typed rows, each answer with the `Snapshot` it was read at."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime
from decimal import Decimal
from typing import Generic, TypeAlias, TypeVar

from query_server.page_tokens import Key

_T = TypeVar("_T")


@dataclass(frozen=True, slots=True)
class Snapshot:
    """The projector checkpoints an answer was read at."""

    checkpoints: Mapping[int, int]
    """Last applied offset per partition of the event topic."""
    as_of: datetime | None
    """When the latest of them was written; None before the projector wrote any."""


@dataclass(frozen=True, slots=True)
class AccountRow:
    account_id: str
    currency: str
    owner: str
    status: str
    balance: Decimal
    version: int
    partition: int
    opened_at: datetime
    updated_at: datetime
    owner_sealed: bytes | None = None
    """The owner sealed with the account's data key (query_server/owners.py opens it)."""
    owner_erased: bool = False


@dataclass(frozen=True, slots=True)
class MovementRow:
    event_id: str
    account_id: str
    version: int
    kind: str
    amount: Decimal
    balance_after: Decimal
    occurred_at: datetime
    counterparty_id: str | None
    transfer_id: str | None
    command_id: str
    reference: str
    memo: str


@dataclass(frozen=True, slots=True)
class BalanceRow:
    account_id: str
    currency: str
    balance: Decimal
    version: int


BalanceAtRow: TypeAlias = tuple[str, str, Decimal, int, bool, int, int, bool]
"""One account as it was at an instant, as statements.BALANCES_AT returns it (no object made per
row: a page holds thousands): account id, currency, balance then, version then, whether it was
closed then, when it was opened (whole seconds since the epoch, and nanoseconds), and whether
it existed then (the query keeps only those that did)."""


@dataclass(frozen=True, slots=True)
class CurrencyTotalsRow:
    currency: str
    money_in: Decimal
    money_out: Decimal
    movement_count: int
    account_count: int
    closed_account_count: int
    transferred_out: Decimal = Decimal(0)
    """Of `money_out`, what left by transfer; of `money_in`, `transferred_in` arrived by one."""
    transferred_in: Decimal = Decimal(0)


@dataclass(frozen=True, slots=True)
class TransferRow:
    transfer_id: str
    from_account_id: str
    to_account_id: str
    currency: str
    amount: Decimal
    cross_shard: bool | None
    sent_at: datetime | None
    credited_at: datetime | None
    refunded_at: datetime | None
    refund_reason: str | None


@dataclass(frozen=True, slots=True)
class SummaryRow:
    account_id: str
    day: date
    currency: str
    inflow: Decimal
    outflow: Decimal
    movement_count: int
    closing_balance: Decimal


@dataclass(frozen=True, slots=True)
class CheckpointRow:
    partition: int
    last_offset: int
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class Page(Generic[_T]):
    rows: list[_T]
    next_after: Key | None
    """The sort key to continue after; None on the last page."""
    snapshot: Snapshot


@dataclass(frozen=True, slots=True)
class Movements:
    """Some of one account's movements, with the account's currency (amounts need it)."""

    currency: str
    page: Page[MovementRow]


@dataclass(frozen=True, slots=True)
class AccountChanges:
    """An account's current row and its movements after some version, read together."""

    account: AccountRow
    movements: list[MovementRow]
    complete: bool
    """False when more movements follow than were read."""
    snapshot: Snapshot
