"""An account's current state: the fold of its events."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime


class AccountStatus(enum.Enum):
    OPEN = "open"
    CLOSED = "closed"
    """Closed at a zero balance; refuses every further command but stays readable."""


@dataclass(frozen=True, slots=True)
class Account:
    account_id: str
    currency: str
    owner: str
    status: AccountStatus
    balance: int
    """Minor units of `currency`; never negative."""
    version: int
    """Number of events applied: 1 after opening."""
    opened_at: datetime
    updated_at: datetime


_set = object.__setattr__  # what a frozen dataclass's own __init__ sets its fields with


def moved(account: Account, balance: int, version: int, at: datetime) -> Account:
    """`account` after a movement the decider decided on it (open, so it stays open), built
    without the dataclass's keyword handling: `evolve`'s result for that movement at a third
    less (ledger/domain/movements.py; tests/unit/test_movements.py holds the two equal)."""
    state = object.__new__(Account)
    _set(state, "account_id", account.account_id)
    _set(state, "currency", account.currency)
    _set(state, "owner", account.owner)
    _set(state, "status", AccountStatus.OPEN)
    _set(state, "balance", balance)
    _set(state, "version", version)
    _set(state, "opened_at", account.opened_at)
    _set(state, "updated_at", at)
    return state
