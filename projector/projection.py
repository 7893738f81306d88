"""What a batch of events does to the read model, computed without I/O.

`project` checks every event against the accounts' state as stored (through the domain's own
`evolve`, so the read side enforces exactly the rules the write side decided with) and returns
the rows to write. Money stays in integer minor units with the currency's exponent; the
database turns it into NUMERIC in major units with the currency's scale (1234, 2 -> 12.34).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from typing import Any, TypeAlias

from ledger.domain.account import Account
from ledger.domain.decider import InconsistentEvent, evolve
from ledger.domain.money import currency_exponent
from ledger.events.records import (
    AccountClosed,
    AccountOpened,
    Event,
    MoneyDeposited,
    MoneyWithdrawn,
    OwnerErased,
    TransferCredited,
    TransferDebited,
    TransferRefunded,
    TransferSent,
)
from projector.consumed import DecodedRecord
from projector.storable import shown, unstorable
from projector.transfer_rows import TransferLeg, add_leg

MOVEMENT_COLUMNS = (
    "event_id",
    "account_id",
    "version",
    "kind",
    "amount",
    "balance_after",
    "exponent",
    "occurred_us",
    "counterparty_id",
    "transfer_id",
    "command_id",
    "partition",
    "offset",
    "reference",
    "memo",
)

# Kind in the read model, whether the movement brings money in, and whether it is a transfer.
_MOVEMENTS: dict[type[Event], tuple[str, bool, bool]] = {
    MoneyDeposited: ("DEPOSIT", True, False),
    MoneyWithdrawn: ("WITHDRAWAL", False, False),
    TransferDebited: ("TRANSFER_OUT", False, True),
    TransferCredited: ("TRANSFER_IN", True, True),
    # Cross-shard: the debit is a transfer out like a same-shard one (in flight until credited
    # or refunded, which `transfers` tells); the refund brings the money back.
    TransferSent: ("TRANSFER_OUT", False, True),
    TransferRefunded: ("TRANSFER_REFUND", True, True),
}
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND = timedelta(microseconds=1)
_Movement: TypeAlias = MoneyDeposited | MoneyWithdrawn | TransferLeg


class Contradiction(RuntimeError):
    """A decodable event that cannot follow the read model's state of its account, or that the
    read model cannot store (`storable.py`).

    The projector must stop on it: skipping it would silently drop (or invent) a movement.
    """

    def __init__(
        self,
        topic: str,
        record: DecodedRecord,
        stored: StoredAccount | None,
        reason: str,
        *,
        storable: bool = True,
    ) -> None:
        event = record.event
        at = (
            f"event at topic {topic!r} partition {record.partition} offset {record.offset} "
            f"(account {shown(event.account_id)}, event version {event.version})"
        )
        if storable:
            state = "absent" if stored is None else f"at version {stored.account.version}"
            message = f"{at} contradicts the read model, where the account is {state}: {reason}"
        else:
            message = (
                f"{at} cannot be stored in the read model: {reason}. The command server never "
                "writes such an event: find the writer that did, and stop it. The projector "
                "will not skip it (that would drop a movement): once it is decided what the "
                "event stands for, run a projector that can store it, or move this partition's "
                "row in ledger.checkpoints past the offset by hand"
            )
        super().__init__(message)
        self.topic = topic
        self.partition = record.partition
        self.offset = record.offset
        self.account_id = event.account_id


@dataclass(frozen=True, slots=True)
class StoredAccount:
    """An `accounts` row: the domain state plus what only the read model keeps."""

    account: Account
    partition: int
    closed_at: datetime | None
    owner_sealed: bytes | None = None
    """The owner sealed with the account's data key (None: recorded in plaintext, or erased)."""
    owner_erased: bool = False


@dataclass(slots=True)
class DayTotals:
    """One account's movements on one UTC day within a batch, in minor units."""

    currency: str
    inflow: int = 0
    outflow: int = 0
    movement_count: int = 0
    closing_balance: int = 0


@dataclass(slots=True)
class PeriodTotals:
    """One currency's changes within one second of one partition, within a batch: money in
    and out in minor units, movements, accounts opened and closed (for `currency_totals`)."""

    inflow: int = 0
    outflow: int = 0
    movement_count: int = 0
    opened_count: int = 0
    closed_count: int = 0
    transferred_out: int = 0
    """Of `outflow`, what left by transfer; of `inflow`, `transferred_in` arrived by one
    (credit or refund): their difference is the money in flight (migration 0007)."""
    transferred_in: int = 0


PeriodKey: TypeAlias = tuple[int, str, int]
"""(partition, currency, UTC second since the epoch)."""


@dataclass(slots=True)
class Projection:
    """The rows one batch writes: final state of each account it touched, its new movements,
    and its contribution to each (account, day) summary.

    Movements hold money in minor units with the currency's exponent, and their time in
    microseconds since the epoch (MOVEMENT_COLUMNS): the database turns them into NUMERIC and
    timestamptz, which is cheaper than building Decimals, or than asyncpg encoding datetimes.
    """

    accounts: dict[str, StoredAccount] = field(default_factory=dict)
    movements: list[tuple[Any, ...]] = field(default_factory=list)
    days: dict[tuple[str, date], DayTotals] = field(default_factory=dict)
    seconds: dict[PeriodKey, PeriodTotals] = field(default_factory=dict)
    """Rolled up into minutes and days when written (batch_writes.py)."""
    transfers: dict[str, list[Any]] = field(default_factory=dict)
    """Per transfer id, its row's columns (transfer_rows.TRANSFER_COLUMNS) this batch fills."""


def to_minor(major: Decimal, currency: str) -> int:
    """An amount in major units (12.34) as minor units of the currency (1234). Raises
    ValueError if `major` has more decimal places than the currency allows."""
    scaled = major.scaleb(currency_exponent(currency))
    if scaled != scaled.to_integral_value():
        raise ValueError(f"{major} has more decimal places than {currency} allows")
    return int(scaled)


def project(
    topic: str, records: Sequence[DecodedRecord], stored: Mapping[str, StoredAccount]
) -> Projection:
    """The rows that applying `records` (in log order) to the `stored` accounts produces.

    `stored` must hold the current row of every account the records name that exists; it is
    read once per account. Raises Contradiction on the first event that cannot follow its
    account's state.
    """
    projection = Projection()
    tracked: dict[str, _Tracked] = {}
    days = projection.days
    seconds = projection.seconds
    add_movement = projection.movements.append
    # Events of one transaction share their time (the decoder makes one datetime per instant).
    last_time = None
    micros = second = 0
    day = _EPOCH.date()
    # Runs once per event of a catch-up: everything is inline, and a StoredAccount is only
    # built per account at the end, not per event.
    for record in records:
        event = record.event
        account_id = event.account_id
        state = tracked.get(account_id)
        if state is None:
            state = tracked[account_id] = _Tracked(stored.get(account_id))
        current = state.account
        why = unstorable(event)
        if why is not None:
            raise Contradiction(topic, record, state.stored(), why, storable=False)
        try:
            account = evolve(current, event)
        except InconsistentEvent as error:
            raise Contradiction(topic, record, state.stored(), str(error)) from None
        if current is None:
            state.partition = record.partition
        elif state.partition != record.partition:
            # Per-partition checkpoints only order an account's events if they share a
            # partition.
            raise Contradiction(
                topic,
                record,
                state.stored(),
                f"the account's events are in partition {state.partition}, not {record.partition}",
            )
        state.account = account
        movement = _MOVEMENTS.get(type(event))
        if movement is None:
            if isinstance(event, AccountClosed):
                state.closed_at = event.occurred_at
                _period(seconds, record.partition, account.currency, event).closed_count += 1
            elif isinstance(event, AccountOpened):
                _period(seconds, record.partition, account.currency, event).opened_count += 1
                state.owner_sealed = event.owner_sealed or None
            elif isinstance(event, OwnerErased):
                state.owner_sealed, state.owner_erased = None, True
            continue
        kind, inflow, is_transfer = movement
        moved: _Movement = event  # type: ignore[assignment]
        exponent = state.exponent
        if exponent is None:
            exponent = state.exponent = currency_exponent(account.currency)
        balance = account.balance
        amount = moved.amount
        occurred_at = event.occurred_at
        if occurred_at is not last_time:
            last_time = occurred_at
            micros = (occurred_at - _EPOCH) // _MICROSECOND
            second = micros // 1_000_000
            day = occurred_at.date()
        key = (account_id, day)
        totals = days.get(key)
        if totals is None:
            totals = days[key] = DayTotals(account.currency)
        period_key = (record.partition, account.currency, second)
        period = seconds.get(period_key)
        if period is None:
            period = seconds[period_key] = PeriodTotals()
        if is_transfer:
            transfer: TransferLeg = event  # type: ignore[assignment]
            counterparty_id: str | None = transfer.counterparty_id
            transfer_id: str | None = transfer.transfer_id
            add_leg(projection.transfers, transfer, account.currency, exponent, micros)
            if inflow:
                period.transferred_in += amount
            else:
                period.transferred_out += amount
        else:
            counterparty_id = transfer_id = None
        add_movement(
            (
                event.event_id,
                account_id,
                event.version,
                kind,
                amount,
                balance,
                exponent,
                micros,
                counterparty_id,
                transfer_id,
                event.command_id,
                record.partition,
                record.offset,
                event.reference,
                event.memo,
            )
        )
        if inflow:
            totals.inflow += amount
            period.inflow += amount
        else:
            totals.outflow += amount
            period.outflow += amount
        totals.movement_count += 1
        period.movement_count += 1
        totals.closing_balance = balance
    projection.accounts = {account_id: state.final() for account_id, state in tracked.items()}
    return projection


def _period(
    seconds: dict[PeriodKey, PeriodTotals], partition: int, currency: str, event: Event
) -> PeriodTotals:
    key = (partition, currency, (event.occurred_at - _EPOCH) // timedelta(seconds=1))
    totals = seconds.get(key)
    if totals is None:
        totals = seconds[key] = PeriodTotals()
    return totals


class _Tracked:
    """One account's state while a batch is projected (mutable: it changes once per event)."""

    __slots__ = ("account", "closed_at", "exponent", "owner_erased", "owner_sealed", "partition")

    def __init__(self, stored: StoredAccount | None) -> None:
        self.account = None if stored is None else stored.account
        self.partition = -1 if stored is None else stored.partition
        self.closed_at = None if stored is None else stored.closed_at
        self.owner_sealed = None if stored is None else stored.owner_sealed
        self.owner_erased = False if stored is None else stored.owner_erased
        self.exponent: int | None = None

    def stored(self) -> StoredAccount | None:
        return None if self.account is None else self.final()

    def final(self) -> StoredAccount:
        assert self.account is not None, "every tracked account has had an event applied"
        return StoredAccount(
            self.account, self.partition, self.closed_at, self.owner_sealed, self.owner_erased
        )
