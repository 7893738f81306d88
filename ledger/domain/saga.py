"""The decisions of a cross-shard transfer (docs/design.md, decision 13). Pure: no I/O.

A transfer whose accounts live on two shards is a saga of three steps, each decided by the
shard owning the account it changes:

1. `send`: the debiting shard decides the transfer against the debited account alone (exists,
   open, funds, expected version) and records TransferSent; the money is in flight.
2. `credit`: the crediting shard credits the other account (TransferCredited), or gives the
   reason it cannot (`CreditRefusal`: missing or closed account, another currency, a balance
   that would overflow): a reason that never goes away, so refusing is final.
3. `refund`: after a refusal, the debiting shard gives the money back (TransferRefunded).

Each step keeps the transfer's id (the Transfer's command id) and the command's fingerprint,
so that the log tells every step of one transfer apart from any other command.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ledger.domain.account import Account, AccountStatus
from ledger.domain.commands import Transfer, fingerprint
from ledger.domain.decider import event_time
from ledger.domain.money import INT64_MAX, format_amount, parse_amount
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.domain.rules import debited, existing, require_open, require_version
from ledger.domain.validation import require_fields
from ledger.events.records import (
    TransferCredited,
    TransferRefunded,
    TransferSent,
    event_id_for,
)


@dataclass(frozen=True, slots=True)
class CreditRequest:
    """What the crediting shard needs to decide the credit of a transfer."""

    transfer_id: str
    from_account_id: str
    to_account_id: str
    amount: int
    """Minor units of `currency`."""
    currency: str
    fingerprint: str
    """The Transfer command's fingerprint: the credit's event records it."""


@dataclass(frozen=True, slots=True)
class InFlight:
    """A transfer whose money left `account_id` (TransferSent) and has not arrived or come back:
    what a refund needs of it."""

    transfer_id: str
    account_id: str
    counterparty_id: str
    amount: int
    fingerprint: str

    @classmethod
    def of(cls, sent: TransferSent) -> InFlight:
        return cls(
            sent.transfer_id,
            sent.account_id,
            sent.counterparty_id,
            sent.amount,
            sent.command_fingerprint,
        )


@dataclass(frozen=True, slots=True)
class CreditRefusal:
    """Why the credited account cannot take the transfer's money; final."""

    reason: str


def send(
    command: Transfer, source: Account | None, now: datetime
) -> tuple[TransferSent, CreditRequest]:
    """The debit of a transfer to an account of another shard, and the request for its credit;
    raises Rejection as a same-shard transfer would for the debited account."""
    require_fields(command)
    if command.to_account_id == command.from_account_id:
        raise Rejection(
            RejectionKind.INVALID, "from_account_id and to_account_id must be different accounts"
        )
    known = {} if source is None else {source.account_id: source}
    source = existing(known, command.from_account_id)
    amount = parse_amount(command.amount, source.currency)
    require_version(source, command.expected_version)
    require_open(source, "transfer from")
    balance = debited(source, amount, "transfer")
    version = source.version + 1
    digest = fingerprint(command)
    event = TransferSent(
        event_id=event_id_for(source.account_id, version),
        account_id=source.account_id,
        version=version,
        command_id=command.command_id,
        command_fingerprint=digest,
        occurred_at=event_time(now),
        balance_after=balance,
        amount=amount,
        transfer_id=command.command_id,
        counterparty_id=command.to_account_id,
    )
    request = CreditRequest(
        command.command_id,
        command.from_account_id,
        command.to_account_id,
        amount,
        source.currency,
        digest,
    )
    return event, request


def credit(
    request: CreditRequest, account: Account | None, now: datetime
) -> TransferCredited | CreditRefusal:
    """The credit of a transfer's money to `account` (the request's credited account, None if it
    does not exist), or why it is refused."""
    to = request.to_account_id
    if account is None:
        return CreditRefusal(f"account {to!r} does not exist")
    if account.status is AccountStatus.CLOSED:
        return CreditRefusal(f"account {to!r} is closed")
    if account.currency != request.currency:
        return CreditRefusal(
            f"currency mismatch: account {request.from_account_id!r} holds {request.currency} "
            f"but account {to!r} holds {account.currency}"
        )
    balance = account.balance + request.amount
    if balance > INT64_MAX:
        return CreditRefusal(
            f"account {to!r} cannot hold more than "
            f"{format_amount(INT64_MAX, account.currency)} {account.currency}"
        )
    version = account.version + 1
    return TransferCredited(
        event_id=event_id_for(to, version),
        account_id=to,
        version=version,
        command_id=request.transfer_id,
        command_fingerprint=request.fingerprint,
        occurred_at=event_time(now),
        balance_after=balance,
        amount=request.amount,
        transfer_id=request.transfer_id,
        counterparty_id=request.from_account_id,
    )


def refund(sent: InFlight, account: Account, reason: str, now: datetime) -> TransferRefunded:
    """The money of `sent` back on its account (open: an account with money in flight cannot
    be closed, `require_nothing_in_flight`)."""
    version = account.version + 1
    return TransferRefunded(
        event_id=event_id_for(account.account_id, version),
        account_id=account.account_id,
        version=version,
        command_id=sent.transfer_id,
        command_fingerprint=sent.fingerprint,
        occurred_at=event_time(now),
        balance_after=account.balance + sent.amount,
        amount=sent.amount,
        transfer_id=sent.transfer_id,
        counterparty_id=sent.counterparty_id,
        reason=reason,
    )


def require_nothing_in_flight(account_id: str, in_flight: int) -> None:
    """Refuse to close an account whose money is on its way to another shard: a refusal of the
    credit would bring it back to a closed account."""
    if in_flight:
        raise Rejection(
            RejectionKind.PRECONDITION,
            f"cannot close account {account_id!r}: {in_flight} of its transfers to accounts of "
            "other shards are not settled yet (a refused one is refunded to it); retry once "
            "they are (GetTransfer tells)",
        )
