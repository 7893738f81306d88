"""Deciding a movement (Deposit, Withdraw, Transfer) for less: the batch path's fast path.

`decide_movement` gives what `decide` and then `evolve` give for a movement, each event with the
state it leaves its account in, for less than half their CPU (docs/performance.md, "Deciding a
command for less"). It asks two things of its caller, which the writer's batch path has anyway:

- the command's fields were checked by `require_fields` (the command server's gRPC process
  checks every command before it crosses the pipe), so it is not run again;
- `at` is `event_time(now)`, computed once per batch rather than once per command.

What it then skips is only what the rules below guarantee: the event's check of its time, the
state's keyword construction, `evolve`'s checks that the event can follow (it was just decided
on that very state). The rules, their order and their rejections are the general path's own
(ledger/domain/rules.py), and tests/unit/test_movements.py holds the two paths equal (events
and states field by field, rejections' kind and message) for random accounts and commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from ledger.domain.account import Account, moved
from ledger.domain.commands import (
    MOVEMENTS,
    Command,
    Deposit,
    Transfer,
    Withdraw,
    movement_fingerprint,
)
from ledger.domain.decider import decide, evolve
from ledger.domain.money import parse_canonical_amount
from ledger.domain.rules import (
    credited,
    debited,
    existing,
    require_open,
    require_same_currency,
    require_version,
)
from ledger.domain.validation import require_fields
from ledger.events.records import (
    Event,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCredited,
    TransferDebited,
    decided_movement,
    event_id_for,
)


def decide_checked(
    command: Command, accounts: Mapping[str, Account], now: datetime, at: datetime
) -> list[tuple[Event, Account]]:
    """`decide` then `evolve`: each event of `command` with the state it leaves its account in,
    or a Rejection; for a command `require_fields` accepted, `at` being `event_time(now)`.
    Movements go by `decide_movement`, any other command the general way."""
    if isinstance(command, MOVEMENTS):
        return decide_movement(command, accounts, at)
    decided: list[tuple[Event, Account]] = []
    states: dict[str, Account] = {}
    for event in decide(command, accounts, now):
        account_id = event.account_id
        state = states[account_id] = evolve(
            states.get(account_id) or accounts.get(account_id), event
        )
        decided.append((event, state))
    return decided


def decide_movement(
    command: Deposit | Withdraw | Transfer, accounts: Mapping[str, Account], at: datetime
) -> list[tuple[Event, Account]]:
    """The events of `command` with their accounts' new states, or a Rejection: `decide` then
    `evolve`, for a command whose fields `require_fields` accepted and events at `at`
    (`event_time`)."""
    if isinstance(command, Transfer):
        return _transfer(command, accounts, at)
    account = existing(accounts, command.account_id)
    amount, canonical = parse_canonical_amount(command.amount, account.currency)
    require_version(account, command.expected_version)
    kind: type[MoneyDeposited | MoneyWithdrawn]
    if isinstance(command, Deposit):
        require_open(account, "deposit into")
        balance, kind = credited(account, amount), MoneyDeposited
    else:
        require_open(account, "withdraw from")
        balance, kind = debited(account, amount, "withdrawal"), MoneyWithdrawn
    fingerprint = movement_fingerprint(command, canonical)
    return [_moved(kind, command, fingerprint, account, balance, amount, at)]


def _transfer(
    command: Transfer, accounts: Mapping[str, Account], at: datetime
) -> list[tuple[Event, Account]]:
    if command.from_account_id == command.to_account_id:
        # Refused at the edge already; but its two legs would both build on one state here.
        require_fields(command)
    source = existing(accounts, command.from_account_id)
    destination = existing(accounts, command.to_account_id)
    amount, canonical = parse_canonical_amount(command.amount, source.currency)
    require_version(source, command.expected_version)
    require_open(source, "transfer from")
    require_open(destination, "transfer to")
    require_same_currency(source, destination)
    debit, credit = debited(source, amount, "transfer"), credited(destination, amount)
    fingerprint = movement_fingerprint(command, canonical)
    return [
        _moved(TransferDebited, command, fingerprint, source, debit, amount, at, destination),
        _moved(TransferCredited, command, fingerprint, destination, credit, amount, at, source),
    ]


def _moved(
    kind: type[MoneyDeposited | MoneyWithdrawn | TransferDebited | TransferCredited],
    command: Deposit | Withdraw | Transfer,
    fingerprint: str,
    account: Account,
    balance: int,
    amount: int,
    at: datetime,
    counterparty: Account | None = None,
) -> tuple[Event, Account]:
    """The event of a movement on `account` (a leg of a transfer with its `counterparty`), and
    the state it leaves the account in."""
    account_id, version = account.account_id, account.version + 1
    event = decided_movement(
        kind,
        event_id_for(account_id, version),
        account_id,
        version,
        command.command_id,
        fingerprint,
        at,
        balance,
        command.reference,
        command.memo,
        amount,
        None if counterparty is None else counterparty.account_id,
    )
    return event, moved(account, balance, version, at)
