"""What the clients know of the accounts from the answers they got, shared by all clients."""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass, field

from fault_drill.journal import OK, CommandRecord, Kind, Status

OPEN, RETIRING, CLOSED, UNCERTAIN = "open", "retiring", "closed", "uncertain"
COMPLETED, REFUNDED, UNKNOWN = "completed", "refunded", "unknown"
"""How a cross-shard transfer answered PENDING ended, as far as its client learned."""


@dataclass(slots=True)
class AccountView:
    """What the clients know of an account from the answers they got."""

    account_id: str
    currency: str
    owner: int
    state: str = OPEN
    balance: int = 0
    pending_debits: int = 0
    inflight: int = 0
    idle: asyncio.Event = field(default_factory=asyncio.Event)
    """Set while no command touching the account is in flight."""

    def __post_init__(self) -> None:
        self.idle.set()

    @property
    def available(self) -> int:
        """What can surely be taken out, whatever the commands in flight turn out to do."""
        return self.balance - self.pending_debits


@dataclass(slots=True)
class Acked:
    account_id: str
    version: int
    token: str


@dataclass(slots=True)
class Book:
    """The accounts the clients have opened (acknowledged), shared by all clients."""

    accounts: dict[str, AccountView] = field(default_factory=dict)
    recent: deque[Acked] = field(default_factory=lambda: deque(maxlen=500))

    def owned(self, client: int, state: str = OPEN) -> list[AccountView]:
        return [a for a in self.accounts.values() if a.owner == client and a.state == state]

    def open_in(self, currency: str) -> list[AccountView]:
        return [a for a in self.accounts.values() if a.currency == currency and a.state == OPEN]

    def begin(self, record: CommandRecord) -> None:
        for account_id in record.accounts:
            view = self.accounts.get(account_id)
            if view is not None:
                view.inflight += 1
                view.idle.clear()
        if record.kind in (Kind.WITHDRAW, Kind.TRANSFER) and record.expect == OK:
            assert record.amount is not None
            self.accounts[record.accounts[0]].pending_debits += record.amount

    def end(self, record: CommandRecord) -> None:
        """The command has its outcome: apply it (if acknowledged) to what we know. A transfer
        answered PENDING keeps both accounts in flight until `saga_ended`: the credit, or a
        refund to the source, is still to come."""
        in_saga = record.status is Status.ACKNOWLEDGED and record.answered_pending
        if not in_saga:
            self._settled(record.accounts)
        if record.kind in (Kind.WITHDRAW, Kind.TRANSFER) and record.expect == OK:
            assert record.amount is not None
            self.accounts[record.accounts[0]].pending_debits -= record.amount
        if record.status is Status.UNRESOLVED:
            for account_id in record.accounts:
                if account_id in self.accounts:
                    self.accounts[account_id].state = UNCERTAIN
            return
        if record.status is not Status.ACKNOWLEDGED:
            return
        assert record.version is not None
        assert record.token is not None
        self.recent.append(Acked(record.accounts[0], record.version, record.token))
        amount = record.amount or 0
        match record.kind:
            case Kind.OPEN:
                self.accounts[record.accounts[0]] = AccountView(
                    record.accounts[0], record.currency, record.client
                )
            case Kind.DEPOSIT:
                self.accounts[record.accounts[0]].balance += amount
            case Kind.WITHDRAW:
                self.accounts[record.accounts[0]].balance -= amount
            case Kind.TRANSFER:
                self.accounts[record.accounts[0]].balance -= amount
                if not in_saga:
                    self.accounts[record.accounts[1]].balance += amount
            case Kind.CLOSE:
                self.accounts[record.accounts[0]].state = CLOSED

    def saga_ended(self, record: CommandRecord, end: str) -> None:
        """The end of a transfer answered PENDING, as GetTransfer showed it: COMPLETED (the
        destination has the money), REFUNDED (the source has it back: the transfer moved
        nothing), or UNKNOWN (the bound passed: neither balance is known any more)."""
        source, destination = (self.accounts[a] for a in record.accounts)
        amount = record.amount or 0
        if end == COMPLETED:
            destination.balance += amount
        elif end == REFUNDED:
            source.balance += amount
        else:
            source.state = destination.state = UNCERTAIN
        self._settled(record.accounts)

    def _settled(self, accounts: tuple[str, ...]) -> None:
        for account_id in accounts:
            view = self.accounts.get(account_id)
            if view is not None:
                view.inflight -= 1
                if not view.inflight:
                    view.idle.set()
