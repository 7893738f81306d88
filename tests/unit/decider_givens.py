"""The givens of the decider's rule tests: accounts built by accepted commands, and the
rejection a command meets."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from ledger.domain.account import Account
from ledger.domain.commands import (
    CloseAccount,
    Command,
    Deposit,
    OpenAccount,
)
from ledger.domain.decider import decide, replay
from ledger.domain.rejection import Rejection

NOW = datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)


def given(*commands: Command) -> dict[str, Account]:
    """The accounts after `commands`, each of which must be accepted."""
    accounts: dict[str, Account] = {}
    for command in commands:
        accounts = replay(decide(command, accounts, NOW), accounts)
    return accounts


def rejected(command: Command, accounts: dict[str, Account]) -> Rejection:
    with pytest.raises(Rejection) as caught:
        decide(command, accounts, NOW)
    return caught.value


def opened(account_id: str, currency: str = "USD") -> OpenAccount:
    return OpenAccount(f"open-{account_id}", account_id, currency, f"owner of {account_id}")


def funded(account_id: str, amount: str, currency: str = "USD") -> tuple[Command, ...]:
    return opened(account_id, currency), Deposit(f"fund-{account_id}", account_id, amount)


def closed(account_id: str) -> tuple[Command, ...]:
    return opened(account_id), CloseAccount(f"close-{account_id}", account_id)
