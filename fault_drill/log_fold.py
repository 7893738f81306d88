"""The whole log folded into what the read model must contain, and the log's own invariants.

The fold is deliberately independent of the projector's code: it uses only the domain's
`evolve` (the rules every event must follow) and builds the read model's rows itself.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TypeAlias

from fault_drill.event_log import LogRecord
from fault_drill.read_model_snapshot import AccountRow, DayRow, MovementRow, TransferRow, iso
from ledger.domain.account import Account, AccountStatus
from ledger.domain.decider import InconsistentEvent, evolve
from ledger.events import records

_TransferLeg: TypeAlias = (
    records.TransferDebited
    | records.TransferCredited
    | records.TransferSent
    | records.TransferRefunded
)
_Movement: TypeAlias = records.MoneyDeposited | records.MoneyWithdrawn | _TransferLeg

_KIND = {
    records.MoneyDeposited: ("DEPOSIT", True),
    records.MoneyWithdrawn: ("WITHDRAWAL", False),
    records.TransferDebited: ("TRANSFER_OUT", False),
    records.TransferCredited: ("TRANSFER_IN", True),
    records.TransferSent: ("TRANSFER_OUT", False),
    records.TransferRefunded: ("TRANSFER_REFUND", True),
}
_STATUS = {AccountStatus.OPEN: "OPEN", AccountStatus.CLOSED: "CLOSED"}


@dataclass(slots=True)
class Fold:
    """The whole log folded: what the read model must contain."""

    accounts: dict[str, Account] = field(default_factory=dict)
    partition_of: dict[str, int] = field(default_factory=dict)
    closed_at: dict[str, datetime] = field(default_factory=dict)
    movements: list[MovementRow] = field(default_factory=list)
    days: dict[tuple[str, str], list[int]] = field(default_factory=dict)
    day_currency: dict[tuple[str, str], str] = field(default_factory=dict)
    by_command: dict[str, list[LogRecord]] = field(default_factory=lambda: defaultdict(list))
    violations: list[str] = field(default_factory=list)
    duplicate_events: list[str] = field(default_factory=list)
    undecodable: int = 0
    events: int = 0
    transfers: dict[str, list[_TransferLeg]] = field(default_factory=lambda: defaultdict(list))
    """Each transfer's events, in log order per partition."""
    currency_of: dict[str, str] = field(default_factory=dict)

    def account_rows(self) -> list[AccountRow]:
        return [
            (
                a.account_id,
                a.currency,
                a.owner,
                _STATUS[a.status],
                a.balance,
                a.version,
                self.partition_of[a.account_id],
                iso(a.opened_at),
                iso(self.closed_at[a.account_id]) if a.account_id in self.closed_at else None,
                iso(a.updated_at),
            )
            for a in self.accounts.values()
        ]

    def transfer_rows(self) -> list[TransferRow]:
        """The read model's `transfers` rows: (id, from, to, currency, amount, cross-shard,
        state)."""
        rows: list[TransferRow] = []
        for transfer_id, legs in self.transfers.items():
            first = legs[0]
            incoming = isinstance(first, records.TransferCredited)
            source = first.counterparty_id if incoming else first.account_id
            destination = first.account_id if incoming else first.counterparty_id
            debits = [leg for leg in legs if isinstance(leg, records.TransferDebited)]
            sends = [leg for leg in legs if isinstance(leg, records.TransferSent)]
            kinds = {type(leg) for leg in legs}
            state = (
                "REFUNDED"
                if records.TransferRefunded in kinds
                else "COMPLETED"
                if records.TransferCredited in kinds
                else "PENDING"
            )
            cross = True if sends else False if debits else None
            currency = self.currency_of.get(source, self.currency_of.get(destination, "?"))
            rows.append((transfer_id, source, destination, currency, first.amount, cross, state))
        return rows

    def in_flight(self) -> dict[str, int]:
        """Per currency that moved money by transfer: what left less what arrived."""
        flying: Counter[str] = Counter()
        for legs in self.transfers.values():
            for leg in legs:
                currency = self.currency_of.get(leg.account_id, "?")
                inflow = isinstance(leg, records.TransferCredited | records.TransferRefunded)
                flying[currency] += -leg.amount if inflow else leg.amount
        return {currency: flying[currency] for currency in flying}

    def day_rows(self) -> list[DayRow]:
        return [
            (account_id, day, self.day_currency[(account_id, day)], *totals)  # type: ignore[misc]
            for (account_id, day), totals in self.days.items()
        ]


def fold_log(log: Sequence[LogRecord]) -> Fold:
    fold = Fold()
    event_ids: dict[str, tuple[int, int]] = {}
    for record in log:
        event = record.event
        where = f"partition {record.partition} offset {record.offset}"
        if event is None:
            fold.undecodable += 1
            fold.violations.append(f"{where}: undecodable record: {record.error}")
            continue
        fold.events += 1
        account_id = event.account_id
        if record.key != account_id:
            fold.violations.append(f"{where}: key {record.key!r} is not the account {account_id!r}")
        partition = fold.partition_of.setdefault(account_id, record.partition)
        if partition != record.partition:
            fold.violations.append(
                f"{where}: account {account_id!r} also has events in partition {partition}"
            )
        fold.by_command[event.command_id].append(record)
        first = event_ids.setdefault(event.event_id, (record.partition, record.offset))
        if first != (record.partition, record.offset):
            fold.duplicate_events.append(
                f"event {event.event_id} ({account_id} v{event.version}) at {where} "
                f"and at partition {first[0]} offset {first[1]}"
            )
        if event.balance_after is not None and event.balance_after < 0:
            fold.violations.append(f"{where}: negative balance_after {event.balance_after}")
        try:
            state = evolve(fold.accounts.get(account_id), event)
        except InconsistentEvent as error:
            fold.violations.append(f"{where}: {error}")
            continue
        fold.accounts[account_id] = state
        fold.currency_of[account_id] = state.currency
        if isinstance(event, _TransferLeg):
            fold.transfers[event.transfer_id].append(event)
        if isinstance(event, records.AccountClosed):
            fold.closed_at[account_id] = event.occurred_at
        kind = _KIND.get(type(event))
        if kind is not None:
            _movement(fold, record, event, state, *kind)
    fold.violations.extend(fold.duplicate_events)
    fold.violations.extend(_log_invariants(log))
    return fold


def _movement(
    fold: Fold, record: LogRecord, event: records.Event, state: Account, kind: str, inflow: bool
) -> None:
    assert isinstance(event, _Movement)
    transfer = event if isinstance(event, _TransferLeg) else None
    fold.movements.append(
        (
            event.event_id,
            event.account_id,
            event.version,
            kind,
            event.amount,
            state.balance,
            iso(event.occurred_at),
            None if transfer is None else transfer.counterparty_id,
            None if transfer is None else transfer.transfer_id,
            event.command_id,
            record.partition,
            record.offset,
        )
    )
    day = (event.account_id, event.occurred_at.astimezone(UTC).date().isoformat())
    totals = fold.days.setdefault(day, [0, 0, 0, 0])
    fold.day_currency[day] = state.currency
    totals[0 if inflow else 1] += event.amount
    totals[2] += 1
    totals[3] = state.balance


def _log_invariants(log: Sequence[LogRecord]) -> list[str]:
    """Checks of the log that do not rely on `evolve`: versions, conservation, transfers."""
    problems: list[str] = []
    versions: dict[str, list[int]] = defaultdict(list)
    flows: dict[str, Counter[str]] = defaultdict(Counter)
    last_balance: dict[str, int] = {}
    currency_of: dict[str, str] = {}
    legs: dict[str, list[_TransferLeg]] = defaultdict(list)
    for record in log:
        event = record.event
        if event is None:
            continue
        account_id = event.account_id
        versions[account_id].append(event.version)
        if isinstance(event, records.AccountOpened):
            currency_of[account_id] = event.currency
        kind = _KIND.get(type(event))
        if kind is not None:
            assert isinstance(event, _Movement)
            flows[account_id][kind[0]] += event.amount
        if isinstance(event, _TransferLeg):
            legs[event.transfer_id].append(event)
        if event.balance_after is not None:
            last_balance[account_id] = event.balance_after
    for account_id, seen in versions.items():
        if seen != list(range(1, len(seen) + 1)):
            problems.append(
                f"account {account_id}: versions in log order are not 1..n: {seen[:20]}"
            )
    for account_id, flow in flows.items():
        balance = (
            flow["DEPOSIT"]
            - flow["WITHDRAWAL"]
            + flow["TRANSFER_IN"]
            + flow["TRANSFER_REFUND"]
            - flow["TRANSFER_OUT"]
        )
        if balance < 0:
            problems.append(f"account {account_id}: its movements add up to {balance} < 0")
        if account_id in last_balance and last_balance[account_id] != balance:
            problems.append(
                f"account {account_id}: balance_after {last_balance[account_id]} but deposits - "
                f"withdrawals +/- transfers = {balance}"
            )
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    for transfer_id, steps in legs.items():
        whole = _whole_transfer(steps)
        if isinstance(whole, str):
            problems.append(f"transfer {transfer_id}: {whole}")
            continue
        debit, end = whole
        currency = currency_of.get(debit.account_id, "?")
        if currency_of.get(debit.counterparty_id, "?") != currency:
            problems.append(f"transfer {transfer_id}: between currencies")
        totals[currency]["out"] += debit.amount
        totals[currency]["in"] += end.amount
    # Conservation: what left by transfer arrived (credited or refunded) once the drill is
    # over; a transfer still in flight then is reported above.
    for currency, total in totals.items():
        if total["in"] != total["out"]:
            problems.append(
                f"{currency}: transfers out {total['out']} != transfers in {total['in']}"
            )
    return problems


def _whole_transfer(steps: Sequence[_TransferLeg]) -> tuple[_TransferLeg, _TransferLeg] | str:
    """One transfer's (debit, end), or why its events are not a whole transfer: a debit
    (TransferDebited, or a cross-shard TransferSent) and exactly one end (its credit, or for a
    send, a refund), matching in amount and accounts."""
    debits = [s for s in steps if isinstance(s, records.TransferDebited | records.TransferSent)]
    ends = [s for s in steps if isinstance(s, records.TransferCredited | records.TransferRefunded)]
    if len(debits) != 1 or len(ends) != 1:
        if len(debits) == 1 and not ends and isinstance(debits[0], records.TransferSent):
            return "still in flight at the end: sent, neither credited nor refunded"
        return f"{len(debits)} debits or sends and {len(ends)} credits or refunds: {steps}"
    debit, end = debits[0], ends[0]
    if isinstance(end, records.TransferRefunded) and not isinstance(debit, records.TransferSent):
        return f"a same-shard transfer was refunded: {steps}"
    refund = isinstance(end, records.TransferRefunded)
    if (
        debit.amount != end.amount
        or (end.account_id if not refund else end.counterparty_id) != debit.counterparty_id
        or (end.counterparty_id if not refund else end.account_id) != debit.account_id
    ):
        return f"legs do not match: {debit} / {end}"
    return debit, end
