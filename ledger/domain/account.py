"""An account's current state: the fold of its events."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from datetime import datetime

from ledger.frozen_slots import slot_setter


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


_SET_ACCOUNT_ID = slot_setter(Account, "account_id")
_SET_CURRENCY = slot_setter(Account, "currency")
_SET_OWNER = slot_setter(Account, "owner")
_SET_STATUS = slot_setter(Account, "status")
_SET_BALANCE = slot_setter(Account, "balance")
_SET_VERSION = slot_setter(Account, "version")
_SET_OPENED_AT = slot_setter(Account, "opened_at")
_SET_UPDATED_AT = slot_setter(Account, "updated_at")


def moved(account: Account, balance: int, version: int, at: datetime) -> Account:
    """`account` after a movement the decider decided on it (so it is open), built slot by
    slot (`slot_setter`): `evolve`'s result for that movement, at a fraction of its cost
    (ledger/domain/movements.py; tests/unit/test_movements.py holds the two equal)."""
    state = object.__new__(Account)
    _SET_ACCOUNT_ID(state, account.account_id)
    _SET_CURRENCY(state, account.currency)
    _SET_OWNER(state, account.owner)
    _SET_STATUS(state, account.status)  # open: nothing moves on a closed account
    _SET_BALANCE(state, balance)
    _SET_VERSION(state, version)
    _SET_OPENED_AT(state, account.opened_at)
    _SET_UPDATED_AT(state, at)
    return state
