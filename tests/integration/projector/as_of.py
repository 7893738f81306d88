"""A history with ties at the same millisecond, and what the ledger was at any instant of it:
the exports' expected rows, folded from the events alone."""

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import Any

from ledger.command_ids import new_command_id
from ledger.domain.account import Account
from ledger.domain.commands import CloseAccount, Command, Deposit, OpenAccount, Transfer, Withdraw
from ledger.domain.decider import decide, evolve
from ledger.domain.money import currency_exponent
from ledger.domain.rejection import Rejection
from ledger.events import records
from ledger.events.records import AccountClosed, AccountOpened, Event

START = datetime(2026, 3, 1, 22, 0, tzinfo=UTC)
KINDS: dict[type, str] = {
    records.MoneyDeposited: "DEPOSIT",
    records.MoneyWithdrawn: "WITHDRAWAL",
    records.TransferDebited: "TRANSFER_OUT",
    records.TransferCredited: "TRANSFER_IN",
}
CURRENCIES = ("USD", "JPY", "KWD", "EUR")


@dataclass
class TimedHistory:
    """Commands decided by the domain at chosen instants (milliseconds: the events' precision)."""

    accounts: dict[str, Account]
    events: list[Event]
    now: datetime = START

    def at(self, when: datetime, command: Command) -> list[Event]:
        try:
            events = decide(command, self.accounts, when)
        except Rejection:
            return []
        for event in events:
            self.accounts[event.account_id] = evolve(self.accounts.get(event.account_id), event)
        self.events += events
        return events


def history(prefix: str, seed: int = 23) -> TimedHistory:
    """Accounts in four currencies over three UTC days: deposits, withdrawals, transfers (both
    legs at one instant), commands sharing a millisecond, one account closed halfway, one
    opened last."""
    made = TimedHistory({}, [])
    pick = random.Random(seed)
    ids = [f"{prefix}-{n}" for n in range(12)]
    now = START
    for n, account_id in enumerate(ids):
        now += timedelta(minutes=1)
        made.at(now, OpenAccount(new_command_id(), account_id, CURRENCIES[n % 4], f"owner {n}"))
    for step in range(240):
        # One command in five shares the previous one's millisecond.
        if pick.random() > 0.2:
            now += timedelta(minutes=pick.randint(1, 30), milliseconds=pick.randint(1, 999))
        account_id = pick.choice(ids)
        amount = str(pick.randint(1, 400))
        roll = pick.random()
        # Some movements carry a reference, some a memo (issue 23's metadata), some both.
        reference, memo = f"ref-{step % 7}" if step % 3 else "", f"n° {step}" * (step % 2)
        command: Command
        if roll < 0.45:
            command = Deposit(new_command_id(), account_id, amount, None, reference, memo)
        elif roll < 0.65:
            command = Withdraw(new_command_id(), account_id, amount, None, reference, memo)
        else:
            same_currency = [i for n, i in enumerate(ids) if n % 4 == ids.index(account_id) % 4]
            target = pick.choice(same_currency)
            command = Transfer(new_command_id(), account_id, target, amount, None, reference, memo)
        made.at(now, command)
        if step == 120:
            closing = ids.pop()
            balance = made.accounts[closing].balance
            if balance:
                units = Decimal(balance).scaleb(-currency_exponent(made.accounts[closing].currency))
                made.at(now, Withdraw(new_command_id(), closing, str(units)))
            made.at(now, CloseAccount(new_command_id(), closing))
    made.at(now + timedelta(minutes=5), OpenAccount(new_command_id(), f"{prefix}-late", "USD", "L"))
    made.now = now
    return made


def money(minor: int, currency: str) -> Decimal:
    """Minor units as the currency's decimal: 150 USD is 1.50."""
    return Decimal(minor).scaleb(-currency_exponent(currency))


def expected_accounts(events: list[Event], at: datetime) -> list[tuple[Any, ...]]:
    """accounts.<format>'s rows as of `at`, in account order."""
    folded: dict[str, Account] = {}
    opened: dict[str, tuple[str, datetime]] = {}
    closed: dict[str, datetime] = {}
    for event in events:
        if event.occurred_at > at:
            continue
        folded[event.account_id] = evolve(folded.get(event.account_id), event)
        if isinstance(event, AccountOpened):
            opened[event.account_id] = (event.owner, event.occurred_at)
        if isinstance(event, AccountClosed):
            closed[event.account_id] = event.occurred_at
    return [
        (
            account.account_id,
            account.currency,
            opened[account.account_id][0],
            account.status.name,
            money(account.balance, account.currency),
            account.version,
            opened[account.account_id][1],
            closed.get(account.account_id),
        )
        for account in sorted(folded.values(), key=lambda account: account.account_id)
    ]


def expected_movements(events: list[Event], at: datetime) -> list[tuple[Any, ...]]:
    """movements.<format>'s rows as of `at`, in (account, version) order."""
    currency: dict[str, str] = {}
    balance: dict[str, int] = {}
    rows = []
    for event in events:
        if isinstance(event, AccountOpened):
            currency[event.account_id] = event.currency
            balance[event.account_id] = 0
        kind = KINDS.get(type(event))
        if kind is None or event.occurred_at > at:
            continue
        amount: int = event.amount  # type: ignore[union-attr]
        inflow = kind in ("DEPOSIT", "TRANSFER_IN")
        balance[event.account_id] += amount if inflow else -amount
        of = currency[event.account_id]
        rows.append(
            (
                event.account_id,
                event.version,
                event.occurred_at,
                kind,
                of,
                money(amount, of),
                money(amount if inflow else -amount, of),
                money(balance[event.account_id], of),
                getattr(event, "counterparty_id", None),
                getattr(event, "transfer_id", None),
                event.command_id,
                event.event_id,
                event.reference,
                event.memo,
            )
        )
    return sorted(rows, key=lambda row: (row[0], row[1]))


def as_text(row: tuple[Any, ...]) -> tuple[str, ...]:
    """A row as its CSV fields: decimals as written, times in ISO 8601, None empty."""
    return tuple(
        ""
        if value is None
        else value.isoformat(timespec="microseconds")
        if isinstance(value, datetime)
        else str(value)
        for value in row
    )


def tie(events: list[Event]) -> datetime:
    """An instant shared by two commands (not a transfer's two legs), past the first half."""
    seen: dict[datetime, set[str]] = {}
    for event in events[len(events) // 2 :]:
        commands = seen.setdefault(event.occurred_at, set())
        commands.add(event.command_id)
        if len(commands) > 1 and KINDS.get(type(event)):
            return event.occurred_at
    raise AssertionError("the history has no two commands in one millisecond")
