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
