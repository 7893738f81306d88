"""Cross-shard transfers as the command servers' saga records them (TransferSent on the debited
account; later the counterparty's TransferCredited or the debited account's TransferRefunded),
beside same-shard transfers, deposits and withdrawals decided by the domain; and what the
ledger was at any instant, folded from the events alone."""

import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.command_ids import new_command_id
from ledger.domain.account import Account
from ledger.domain.commands import Command, Deposit, OpenAccount, Transfer, Withdraw
from ledger.domain.decider import decide, evolve
from ledger.domain.rejection import Rejection
from ledger.events import records
from ledger.events.records import Event, event_id_for

CURRENCIES = ("EUR", "JPY")


@dataclass
class SagaHistory:
    accounts: dict[str, Account] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    pending: dict[str, records.TransferSent] = field(default_factory=dict)
    """Sent, neither credited nor refunded yet."""

    def record(self, events: Sequence[Event]) -> list[Event]:
        for event in events:
            self.accounts[event.account_id] = evolve(self.accounts.get(event.account_id), event)
        self.events += events
        return list(events)

    def decide(self, command: Command, at: datetime) -> list[Event]:
        try:
            return self.record(decide(command, self.accounts, at))
        except Rejection:
            return []

    def _fields(
        self, account_id: str, command_id: str, at: datetime, change: int
    ) -> dict[str, Any]:
        account = self.accounts[account_id]
        version = account.version + 1
        return {
            "event_id": event_id_for(account_id, version),
            "account_id": account_id,
            "version": version,
            "command_id": command_id,
            "command_fingerprint": "saga",
            "occurred_at": at,
            "balance_after": account.balance + change,
        }

    def send(self, source: str, destination: str, amount: int, at: datetime) -> str | None:
        """The debiting shard's step; the transfer's id, or None if the balance is short."""
        if self.accounts[source].balance < amount:
            return None
        transfer_id = new_command_id()
        sent = records.TransferSent(
            **self._fields(source, transfer_id, at, -amount),
            amount=amount,
            transfer_id=transfer_id,
            counterparty_id=destination,
        )
        self.record([sent])
        self.pending[transfer_id] = sent
        return transfer_id

    def credit(self, transfer_id: str, at: datetime) -> Event:
        """The crediting shard's step: the money reaches the counterparty."""
        return self._end(transfer_id, at, None)

    def refund(self, transfer_id: str, at: datetime, reason: str) -> Event:
        """The debiting shard's step after a refusal: the money comes back."""
        return self._end(transfer_id, at, reason)

    def _end(self, transfer_id: str, at: datetime, refused: str | None) -> Event:
        sent = self.pending.pop(transfer_id)
        # A credit goes to the counterparty, from the sender; a refund back to the sender.
        account, other = sent.account_id, sent.counterparty_id
        if refused is None:
            account, other = other, account
        common = self._fields(account, transfer_id, at, sent.amount)
        leg: dict[str, Any] = {
            "amount": sent.amount,
            "transfer_id": transfer_id,
            "counterparty_id": other,
        }
        end: Event = (
            records.TransferCredited(**common, **leg)
            if refused is None
            else records.TransferRefunded(**common, **leg, reason=refused)
        )
        return self.record([end])[0]


def generate(prefix: str, seed: int, steps: int) -> SagaHistory:
    """Accounts in two currencies; deposits, withdrawals, same-shard transfers and sagas that
    complete or are refunded a few seconds to minutes after they were sent, a few left pending.
    Times are whole milliseconds, several events sharing some."""
    made = SagaHistory()
    pick = random.Random(seed)
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(hours=2)
    ids = [f"{prefix}-{n}" for n in range(10)]
    for n, account_id in enumerate(ids):
        made.decide(OpenAccount(new_command_id(), account_id, CURRENCIES[n % 2], "o"), now)
        made.decide(Deposit(new_command_id(), account_id, "500"), now)
    for _ in range(steps):
        if pick.random() > 0.25:
            now += timedelta(milliseconds=pick.choice([1, 300, 1000, 7000, 61_000]))
        due = [t for t in made.pending if pick.random() < 0.3]
        for transfer_id in due[:2]:
            if pick.random() < 0.8:
                made.credit(transfer_id, now)
            else:
                made.refund(transfer_id, now, "account is closed")
        source = pick.choice(ids)
        same = [i for n, i in enumerate(ids) if n % 2 == ids.index(source) % 2 and i != source]
        roll, amount = pick.random(), pick.randint(1, 90)
        if roll < 0.25:
            made.decide(Deposit(new_command_id(), source, str(amount)), now)
        elif roll < 0.4:
            made.decide(Withdraw(new_command_id(), source, str(amount)), now)
        elif roll < 0.55:
            made.decide(Transfer(new_command_id(), source, pick.choice(same), str(amount)), now)
        else:
            made.send(source, pick.choice(same), amount * 100, now)
    return made


@dataclass(frozen=True)
class Conserved:
    """Per currency at an instant, in minor units: the balances' sum, what is in flight (sent,
    neither credited nor refunded by then), deposits less withdrawals."""

    balances: int
    in_flight: int
    net_deposits: int


def fold_at(events: Sequence[Event], at: datetime) -> dict[str, Conserved]:
    accounts: dict[str, Account] = {}
    currency_of: dict[str, str] = {}
    sent: dict[str, tuple[str, int]] = {}
    ended: set[str] = set()
    net: dict[str, int] = {}
    for event in events:  # each account's events in log order
        if event.occurred_at > at:
            continue
        account = evolve(accounts.get(event.account_id), event)
        accounts[event.account_id] = account
        currency_of[event.account_id] = account.currency
        if isinstance(event, records.MoneyDeposited):
            net[account.currency] = net.get(account.currency, 0) + event.amount
        elif isinstance(event, records.MoneyWithdrawn):
            net[account.currency] = net.get(account.currency, 0) - event.amount
        elif isinstance(event, records.TransferSent):
            sent[event.transfer_id] = (account.currency, event.amount)
        elif isinstance(event, records.TransferCredited | records.TransferRefunded):
            ended.add(event.transfer_id)
    flying: dict[str, int] = {}
    for transfer_id, (currency, amount) in sent.items():
        if transfer_id not in ended:
            flying[currency] = flying.get(currency, 0) + amount
    held: dict[str, int] = {}
    for account in accounts.values():
        held[account.currency] = held.get(account.currency, 0) + account.balance
    return {
        currency: Conserved(held[currency], flying.get(currency, 0), net.get(currency, 0))
        for currency in held
    }
