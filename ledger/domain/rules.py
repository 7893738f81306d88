"""The rules a command meets on the accounts it touches, each refusing with a Rejection that says
why: shared by the general decider (decider.py), the movements' fast path (movements.py) and
the saga's steps (saga.py), so that each refuses alike."""

from __future__ import annotations

from collections.abc import Mapping

from ledger.domain.account import Account, AccountStatus
from ledger.domain.money import INT64_MAX, format_amount
from ledger.domain.rejection import Rejection, RejectionKind

_CLOSED = AccountStatus.CLOSED  # an enum member read from its class costs more than the check


def existing(accounts: Mapping[str, Account], account_id: str) -> Account:
    account = accounts.get(account_id)
    if account is None:
        raise Rejection(RejectionKind.NOT_FOUND, f"account {account_id!r} does not exist")
    return account


def require_version(account: Account, expected_version: int | None) -> None:
    if expected_version is not None and expected_version != account.version:
        raise Rejection(
            RejectionKind.VERSION_CONFLICT,
            f"account {account.account_id!r} is at version {account.version}, not the expected "
            f"version {expected_version}: read it again and decide anew",
        )


def require_open(account: Account, action: str) -> None:
    if is_closed(account):
        raise Rejection(
            RejectionKind.PRECONDITION,
            f"cannot {action} account {account.account_id!r}: it is closed",
        )


def is_closed(account: Account) -> bool:
    return account.status is _CLOSED


def credited(account: Account, amount: int) -> int:
    balance = account.balance + amount
    if balance > INT64_MAX:
        raise Rejection(
            RejectionKind.PRECONDITION,
            f"account {account.account_id!r} cannot hold more than "
            f"{money(INT64_MAX, account)}: balance {money(account.balance, account)}, "
            f"credit {money(amount, account)}",
        )
    return balance


def debited(account: Account, amount: int, movement: str) -> int:
    if amount > account.balance:
        raise Rejection(
            RejectionKind.PRECONDITION,
            f"insufficient funds: account {account.account_id!r} balance "
            f"{money(account.balance, account)}, {movement} {money(amount, account)}",
        )
    return account.balance - amount


def money(minor: int, account: Account) -> str:
    return f"{format_amount(minor, account.currency)} {account.currency}"


def require_same_currency(source: Account, destination: Account) -> None:
    if source.currency != destination.currency:
        raise Rejection(
            RejectionKind.PRECONDITION,
            f"currency mismatch: account {source.account_id!r} holds {source.currency} but "
            f"account {destination.account_id!r} holds {destination.currency}",
        )
