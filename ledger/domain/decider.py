"""The ledger's rules: `decide` turns a command into events, `evolve` folds an event into state.

Both are pure. The command server keeps the accounts it owns by evolving them with every event it
reads or writes, and asks `decide` what a new command means for them. Its writer decides a batch's
movements by a fast path beside these (ledger/domain/movements.py), held equal to `decide` then
`evolve` by property tests.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import TypedDict

from ledger.domain.account import Account, AccountStatus
from ledger.domain.commands import (
    CloseAccount,
    Command,
    Deposit,
    EraseOwner,
    OpenAccount,
    Transfer,
    Withdraw,
    fingerprint,
    metadata_of,
)
from ledger.domain.money import parse_amount
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.domain.rules import (
    credited,
    debited,
    existing,
    is_closed,
    money,
    require_open,
    require_same_currency,
    require_version,
)
from ledger.domain.validation import require_fields
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
    event_id_for,
)


class InconsistentEvent(ValueError):
    """An event that cannot follow the account's current state.

    The log never holds such an event when every writer goes through `decide`, so meeting one
    means the log or the reader is wrong; it must stop processing rather than be skipped.
    """


def decide(command: Command, accounts: Mapping[str, Account], now: datetime) -> list[Event]:
    """The events that `command` causes, or a Rejection saying why it is refused.

    `accounts` holds the current state of the accounts the command touches (see `accounts_of`);
    an absent id is an account that does not exist. `now` (timezone-aware) becomes the events'
    `occurred_at`, truncated to milliseconds.
    """
    occurred_at = event_time(now)
    require_fields(command)
    match command:
        case OpenAccount():
            return _open(command, accounts, occurred_at)
        case Deposit():
            return _deposit(command, accounts, occurred_at)
        case Withdraw():
            return _withdraw(command, accounts, occurred_at)
        case Transfer():
            return _transfer(command, accounts, occurred_at)
        case CloseAccount():
            return _close(command, accounts, occurred_at)
        case EraseOwner():
            return _erase(command, accounts, occurred_at)


def evolve(account: Account | None, event: Event) -> Account:
    """The account's state after `event`. Raises InconsistentEvent if the event cannot follow."""
    if isinstance(event, AccountOpened):
        evolved = _opened(account, event)
    elif isinstance(event, OwnerErased):
        evolved = _erased(account, event)
    else:
        evolved = _changed(account, event)
    if event.balance_after is not None and event.balance_after != evolved.balance:
        raise InconsistentEvent(
            f"{_describe(event)}: records balance_after {event.balance_after} but the balance "
            f"is {evolved.balance}"
        )
    return evolved


def replay(
    events: Iterable[Event], accounts: Mapping[str, Account] | None = None
) -> dict[str, Account]:
    """Fold `events` in order into the states of the accounts they concern, starting from
    `accounts` (which is not modified)."""
    states = dict(accounts or {})
    for event in events:
        states[event.account_id] = evolve(states.get(event.account_id), event)
    return states


def _open(command: OpenAccount, accounts: Mapping[str, Account], at: datetime) -> list[Event]:
    found = accounts.get(command.account_id)
    if found is not None:
        closed = " (closed; account ids are never reused)" if is_closed(found) else ""
        raise Rejection(
            RejectionKind.ALREADY_EXISTS,
            f"account {command.account_id!r} already exists{closed}",
        )
    common = _common(command, command.account_id, version=1, at=at, balance_after=0)
    return [AccountOpened(**common, currency=command.currency, owner=command.owner)]


def _deposit(command: Deposit, accounts: Mapping[str, Account], at: datetime) -> list[Event]:
    account, amount = _checked_movement(command, accounts, "deposit into")
    balance = credited(account, amount)
    common = _common(command, account.account_id, account.version + 1, at, balance)
    return [MoneyDeposited(**common, amount=amount)]


def _withdraw(command: Withdraw, accounts: Mapping[str, Account], at: datetime) -> list[Event]:
    account, amount = _checked_movement(command, accounts, "withdraw from")
    balance = debited(account, amount, "withdrawal")
    common = _common(command, account.account_id, account.version + 1, at, balance)
    return [MoneyWithdrawn(**common, amount=amount)]


def _checked_movement(
    command: Deposit | Withdraw, accounts: Mapping[str, Account], verb: str
) -> tuple[Account, int]:
    """The open account a deposit or withdrawal moves money on, and the amount in minor units."""
    account = existing(accounts, command.account_id)
    amount = parse_amount(command.amount, account.currency)
    require_version(account, command.expected_version)
    require_open(account, verb)
    return account, amount


def _transfer(command: Transfer, accounts: Mapping[str, Account], at: datetime) -> list[Event]:
    source = existing(accounts, command.from_account_id)
    destination = existing(accounts, command.to_account_id)
    amount = parse_amount(command.amount, source.currency)
    require_version(source, command.expected_version)
    require_open(source, "transfer from")
    require_open(destination, "transfer to")
    require_same_currency(source, destination)
    source_balance = debited(source, amount, "transfer")
    destination_balance = credited(destination, amount)
    debit = _common(command, source.account_id, source.version + 1, at, source_balance)
    credit = _common(
        command, destination.account_id, destination.version + 1, at, destination_balance
    )
    return [
        TransferDebited(
            **debit,
            amount=amount,
            transfer_id=command.command_id,
            counterparty_id=destination.account_id,
        ),
        TransferCredited(
            **credit,
            amount=amount,
            transfer_id=command.command_id,
            counterparty_id=source.account_id,
        ),
    ]


def _close(command: CloseAccount, accounts: Mapping[str, Account], at: datetime) -> list[Event]:
    account = existing(accounts, command.account_id)
    require_version(account, command.expected_version)
    if is_closed(account):
        raise Rejection(
            RejectionKind.PRECONDITION,
            f"cannot close account {account.account_id!r}: it is already closed",
        )
    if account.balance != 0:
        raise Rejection(
            RejectionKind.PRECONDITION,
            f"cannot close account {account.account_id!r}: its balance is "
            f"{money(account.balance, account)}, and only a zero balance can be closed",
        )
    return [AccountClosed(**_common(command, account.account_id, account.version + 1, at, 0))]


def _erase(command: EraseOwner, accounts: Mapping[str, Account], at: datetime) -> list[Event]:
    # Open or closed, erased before or not: erasure is always possible and repeating it is
    # harmless (its key is forgotten again), so a retry after a lost answer never fails.
    account = existing(accounts, command.account_id)
    version = account.version + 1
    return [OwnerErased(**_common(command, account.account_id, version, at, account.balance))]


def _opened(account: Account | None, event: AccountOpened) -> Account:
    if account is not None:
        raise InconsistentEvent(f"{_describe(event)}: the account was already opened")
    if event.version != 1:
        raise InconsistentEvent(f"{_describe(event)}: an account opens at version 1")
    return Account(
        account_id=event.account_id,
        currency=event.currency,
        owner=event.owner,
        status=AccountStatus.OPEN,
        balance=0,
        version=1,
        opened_at=event.occurred_at,
        updated_at=event.occurred_at,
    )


def _erased(account: Account | None, event: OwnerErased) -> Account:
    _require_next(account, event)
    assert account is not None  # _require_next
    return Account(
        account.account_id,
        account.currency,
        "",
        account.status,
        account.balance,
        event.version,
        account.opened_at,
        event.occurred_at,
    )


def _require_next(account: Account | None, event: Event) -> None:
    if account is None:
        raise InconsistentEvent(f"{_describe(event)}: the account does not exist")
    if account.account_id != event.account_id:
        raise InconsistentEvent(f"{_describe(event)}: applied to account {account.account_id!r}")
    if event.version != account.version + 1:
        raise InconsistentEvent(
            f"{_describe(event)}: the account is at version {account.version}, so the next "
            f"event must have version {account.version + 1}"
        )


def _changed(
    account: Account | None,
    event: MoneyDeposited
    | MoneyWithdrawn
    | TransferDebited
    | TransferCredited
    | TransferSent
    | TransferRefunded
    | AccountClosed,
) -> Account:
    _require_next(account, event)
    assert account is not None  # _require_next
    if is_closed(account):
        raise InconsistentEvent(f"{_describe(event)}: the account is closed")
    status = AccountStatus.OPEN
    match event:
        case (
            MoneyDeposited(amount=amount)
            | TransferCredited(amount=amount)
            | TransferRefunded(amount=amount)
        ):
            balance = account.balance + _positive(amount, event)
        case (
            MoneyWithdrawn(amount=amount)
            | TransferDebited(amount=amount)
            | TransferSent(amount=amount)
        ):
            balance = account.balance - _positive(amount, event)
            if balance < 0:
                raise InconsistentEvent(
                    f"{_describe(event)}: overdraws the account (balance {account.balance}, "
                    f"amount {amount} minor units)"
                )
        case AccountClosed():
            if account.balance != 0:
                raise InconsistentEvent(
                    f"{_describe(event)}: closes an account whose balance is {account.balance}"
                )
            balance, status = 0, AccountStatus.CLOSED
    # Spelled out rather than dataclasses.replace: this runs for every event of every replay.
    return Account(
        account.account_id,
        account.currency,
        account.owner,
        status,
        balance,
        event.version,
        account.opened_at,
        event.occurred_at,
    )


class _CommonFields(TypedDict):
    event_id: str
    account_id: str
    version: int
    command_id: str
    command_fingerprint: str
    occurred_at: datetime
    balance_after: int
    reference: str
    memo: str


def _common(
    command: Command, account_id: str, version: int, at: datetime, balance_after: int
) -> _CommonFields:
    return _CommonFields(
        event_id=event_id_for(account_id, version),
        account_id=account_id,
        version=version,
        command_id=command.command_id,
        command_fingerprint=fingerprint(command),
        occurred_at=at,
        balance_after=balance_after,
        **metadata_of(command),  # on each of a movement's events (both legs of a transfer)
    )


def event_time(now: datetime) -> datetime:
    """What an event decided at `now` records as `occurred_at`: UTC, whole milliseconds."""
    if now.utcoffset() is None:
        raise ValueError(f"now must be timezone-aware, got {now!r}")
    utc = now.astimezone(UTC)
    return utc.replace(microsecond=utc.microsecond - utc.microsecond % 1000)


def _positive(amount: int, event: Event) -> int:
    if amount <= 0:
        raise InconsistentEvent(f"{_describe(event)}: amount {amount} is not positive")
    return amount


def _describe(event: Event) -> str:
    return (
        f"{type(event).__name__} {event.event_id} (account {event.account_id!r}, "
        f"version {event.version})"
    )
