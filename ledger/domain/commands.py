"""What clients ask the ledger to do, as received from the API (amounts still decimal strings)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class OpenAccount:
    command_id: str
    account_id: str
    currency: str
    owner: str


@dataclass(frozen=True, slots=True)
class _Movement:
    """The fields of a deposit and of a withdrawal: one account, one amount."""

    command_id: str
    account_id: str
    amount: str
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class Deposit(_Movement):
    """Money paid into the account."""


@dataclass(frozen=True, slots=True)
class Withdraw(_Movement):
    """Money taken out of the account."""


@dataclass(frozen=True, slots=True)
class Transfer:
    command_id: str
    from_account_id: str
    to_account_id: str
    amount: str
    expected_version: int | None = None
    """Expected version of the source account (`from_account_id`)."""


@dataclass(frozen=True, slots=True)
class CloseAccount:
    command_id: str
    account_id: str
    expected_version: int | None = None


Command: TypeAlias = OpenAccount | Deposit | Withdraw | Transfer | CloseAccount


def fingerprint(command: Command) -> str:
    """A stable hash of everything the command asks for except its id.

    A retry carrying the same command_id is only the same command if its fingerprint matches.
    The fingerprint is stored in events, so the payload's names below must never change.
    """
    canonical = json.dumps(_payload(command), sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(canonical.encode("utf-8")).hexdigest()


def accounts_of(command: Command) -> tuple[str, ...]:
    """The ids of the accounts the command reads and changes, without duplicates."""
    match command:
        case Transfer(from_account_id=source, to_account_id=destination):
            return tuple(dict.fromkeys((source, destination)))
        case OpenAccount() | Deposit() | Withdraw() | CloseAccount():
            return (command.account_id,)


def _payload(command: Command) -> dict[str, str | int | None]:
    match command:
        case OpenAccount():
            return {
                "type": "open_account",
                "account_id": command.account_id,
                "currency": command.currency,
                "owner": command.owner,
            }
        case Deposit() | Withdraw():
            return {
                "type": "deposit" if isinstance(command, Deposit) else "withdraw",
                "account_id": command.account_id,
                "amount": command.amount,
                "expected_version": command.expected_version,
            }
        case Transfer():
            return {
                "type": "transfer",
                "from_account_id": command.from_account_id,
                "to_account_id": command.to_account_id,
                "amount": command.amount,
                "expected_version": command.expected_version,
            }
        case CloseAccount():
            return {
                "type": "close_account",
                "account_id": command.account_id,
                "expected_version": command.expected_version,
            }
