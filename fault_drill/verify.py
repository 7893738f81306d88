"""Every check of a drill: the journal against the log, the log's own invariants, its fold against
the read model, and the read model's own invariants.

The fold here is deliberately independent of the projector's code: it uses only the domain's
`evolve` (the rules every event must follow) and builds the read model's rows itself.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from fault_drill.event_log import LogRecord
from fault_drill.journal import EVENTS_PER_COMMAND, CommandRecord, Journal, Kind, Result, Status
from fault_drill.read_model import AccountRow, DayRow, MovementRow, Snapshot, iso
from fault_drill.workload import OK
from ledger.consistency import ConsistencyToken
from ledger.domain.account import Account, AccountStatus
from ledger.domain.decider import InconsistentEvent, evolve
from ledger.events.records import (
    AccountClosed,
    AccountOpened,
    Event,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCredited,
    TransferDebited,
)

_KIND = {
    MoneyDeposited: ("DEPOSIT", True),
    MoneyWithdrawn: ("WITHDRAWAL", False),
    TransferDebited: ("TRANSFER_OUT", False),
    TransferCredited: ("TRANSFER_IN", True),
}
_INFLOWS = ("DEPOSIT", "TRANSFER_IN")
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

    def day_rows(self) -> list[DayRow]:
        return [
            (account_id, day, self.day_currency[(account_id, day)], *totals)  # type: ignore[misc]
            for (account_id, day), totals in self.days.items()
        ]


def fold_log(records: Sequence[LogRecord]) -> Fold:
    fold = Fold()
    event_ids: dict[str, tuple[int, int]] = {}
    for record in records:
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
        if isinstance(event, AccountClosed):
            fold.closed_at[account_id] = event.occurred_at
        kind = _KIND.get(type(event))
        if kind is not None:
            _movement(fold, record, event, state, *kind)
    fold.violations.extend(fold.duplicate_events)
    fold.violations.extend(_log_invariants(records))
    return fold


def _movement(
    fold: Fold, record: LogRecord, event: Event, state: Account, kind: str, inflow: bool
) -> None:
    assert isinstance(event, MoneyDeposited | MoneyWithdrawn | TransferDebited | TransferCredited)
    transfer = event if isinstance(event, TransferDebited | TransferCredited) else None
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


def _log_invariants(records: Sequence[LogRecord]) -> list[str]:
    """Checks of the log that do not rely on `evolve`: versions, conservation, transfers."""
    problems: list[str] = []
    versions: dict[str, list[int]] = defaultdict(list)
    flows: dict[str, Counter[str]] = defaultdict(Counter)
    last_balance: dict[str, int] = {}
    currency_of: dict[str, str] = {}
    legs: dict[str, list[TransferDebited | TransferCredited]] = defaultdict(list)
    for record in records:
        event = record.event
        if event is None:
            continue
        account_id = event.account_id
        versions[account_id].append(event.version)
        if isinstance(event, AccountOpened):
            currency_of[account_id] = event.currency
        kind = _KIND.get(type(event))
        if kind is not None:
            assert isinstance(
                event, MoneyDeposited | MoneyWithdrawn | TransferDebited | TransferCredited
            )
            flows[account_id][kind[0]] += event.amount
        if isinstance(event, TransferDebited | TransferCredited):
            legs[event.transfer_id].append(event)
        if event.balance_after is not None:
            last_balance[account_id] = event.balance_after
    for account_id, seen in versions.items():
        if seen != list(range(1, len(seen) + 1)):
            problems.append(
                f"account {account_id}: versions in log order are not 1..n: {seen[:20]}"
            )
    for account_id, flow in flows.items():
        balance = flow["DEPOSIT"] - flow["WITHDRAWAL"] + flow["TRANSFER_IN"] - flow["TRANSFER_OUT"]
        if balance < 0:
            problems.append(f"account {account_id}: its movements add up to {balance} < 0")
        if account_id in last_balance and last_balance[account_id] != balance:
            problems.append(
                f"account {account_id}: balance_after {last_balance[account_id]} but deposits - "
                f"withdrawals +/- transfers = {balance}"
            )
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    for transfer_id, pair in legs.items():
        debits = [leg for leg in pair if isinstance(leg, TransferDebited)]
        credits = [leg for leg in pair if isinstance(leg, TransferCredited)]
        if len(debits) != 1 or len(credits) != 1:
            problems.append(
                f"transfer {transfer_id}: {len(debits)} debits and {len(credits)} credits"
            )
            continue
        debit, credit = debits[0], credits[0]
        if (
            debit.amount != credit.amount
            or debit.counterparty_id != credit.account_id
            or credit.counterparty_id != debit.account_id
        ):
            problems.append(f"transfer {transfer_id}: legs do not match: {debit} / {credit}")
        currency = currency_of.get(debit.account_id, "?")
        if currency_of.get(credit.account_id, "?") != currency:
            problems.append(f"transfer {transfer_id}: between currencies")
        totals[currency]["out"] += debit.amount
        totals[currency]["in"] += credit.amount
    for currency, total in totals.items():
        if total["in"] != total["out"]:
            problems.append(
                f"{currency}: transfers out {total['out']} != transfers in {total['in']}"
            )
    return problems


@dataclass(slots=True)
class CommandChecks:
    lost: list[str] = field(default_factory=list)
    duplicated: list[str] = field(default_factory=list)
    wrong_effects: list[str] = field(default_factory=list)
    answer_mismatches: list[str] = field(default_factory=list)
    refused_but_applied: list[str] = field(default_factory=list)
    phantoms: list[str] = field(default_factory=list)
    unexpected_refusals: list[str] = field(default_factory=list)
    unexpected_acks: list[str] = field(default_factory=list)
    reuse_probe_failures: list[str] = field(default_factory=list)
    balance_mismatches: list[str] = field(default_factory=list)
    unresolved: int = 0
    unresolved_in_log: int = 0
    acks_checked: int = 0
    retried_acknowledged: int = 0
    """Acknowledged commands whose first attempt failed (its answer, if any, was lost)."""
    answered_from_memory: int = 0
    """Of those, the ones whose events were decided before the attempt that got the answer
    was sent: the write had happened, the answer was lost, and the retry got the original."""


def check_commands(journal: Journal, fold: Fold) -> CommandChecks:
    checks = CommandChecks()
    known: set[str] = set()
    for record in journal:
        known.add(record.command_id)
        found = fold.by_command.get(record.command_id, [])
        expected = EVENTS_PER_COMMAND[record.kind]
        label = f"{record.kind} {record.command_id} ({record.mode})"
        if len(found) > expected:
            checks.duplicated.append(
                f"{label}: {len(found)} events in the log, expected {expected}: "
                + ", ".join(f"p{r.partition}@{r.offset}" for r in found)
            )
        if record.status is Status.ACKNOWLEDGED:
            if len(found) < expected:
                checks.lost.append(
                    f"{label}: acknowledged (version {record.version}) but {len(found)} of its "
                    f"{expected} events are in the log"
                )
            elif len(found) == expected:
                _check_effects(record, found, checks)
                _check_answers(record, found, checks, journal)
            if record.expect != OK:
                checks.unexpected_acks.append(
                    f"{label}: acknowledged, expected {record.expect}: {record.request}"
                )
        elif record.status is Status.REFUSED:
            if found:
                checks.refused_but_applied.append(
                    f"{label}: refused with {record.refusal} but {len(found)} events are in the log"
                )
            if record.expect != record.refusal:
                detail = next((a.detail for a in record.attempts if a.result is Result.REFUSED), "")
                checks.unexpected_refusals.append(
                    f"{label}: refused with {record.refusal} ({detail}), expected {record.expect}"
                )
        else:
            checks.unresolved += 1
            if found:
                checks.unresolved_in_log += 1
    for command_id, found in fold.by_command.items():
        if command_id not in known:
            checks.phantoms.append(
                f"command {command_id} is in the log ({len(found)} events) but no client sent it"
            )
    for command_id, code, detail in journal.reuse_probes:
        if code != "ALREADY_EXISTS":
            checks.reuse_probe_failures.append(
                f"{command_id} sent again with another payload: {code} {detail} "
                "(expected ALREADY_EXISTS)"
            )
    checks.balance_mismatches = _check_balances(journal, fold)
    return checks


def _check_effects(record: CommandRecord, found: list[LogRecord], checks: CommandChecks) -> None:
    events = [r.event for r in found]
    accounts = record.accounts
    ok: bool
    match record.kind:
        case Kind.OPEN:
            (event,) = events
            ok = (
                isinstance(event, AccountOpened)
                and event.account_id == accounts[0]
                and event.currency == record.currency
            )
        case Kind.DEPOSIT:
            (event,) = events
            ok = (
                isinstance(event, MoneyDeposited)
                and event.account_id == accounts[0]
                and event.amount == record.amount
            )
        case Kind.WITHDRAW:
            (event,) = events
            ok = (
                isinstance(event, MoneyWithdrawn)
                and event.account_id == accounts[0]
                and event.amount == record.amount
            )
        case Kind.TRANSFER:
            debit = next((e for e in events if isinstance(e, TransferDebited)), None)
            credit = next((e for e in events if isinstance(e, TransferCredited)), None)
            ok = (
                debit is not None
                and credit is not None
                and debit.account_id == accounts[0]
                and credit.account_id == accounts[1]
                and debit.amount == credit.amount == record.amount
                and debit.transfer_id == credit.transfer_id == record.command_id
            )
        case Kind.CLOSE:
            (event,) = events
            ok = isinstance(event, AccountClosed) and event.account_id == accounts[0]
    if not ok:
        checks.wrong_effects.append(
            f"{record.kind} {record.command_id}: the log has {events}, the request was "
            f"{record.request}"
        )


def _check_answers(
    record: CommandRecord, found: list[LogRecord], checks: CommandChecks, journal: Journal
) -> None:
    """Every acknowledgement of the command (first answer, retries, resends) must carry the
    version and token its events in the log imply."""
    source = next(
        r for r in found if r.event is not None and r.event.account_id == record.accounts[0]
    )
    assert source.event is not None
    version = source.event.version
    positions: dict[int, int] = {}
    for r in found:
        positions[r.partition] = max(r.offset, positions.get(r.partition, -1))
    token = ConsistencyToken(positions).encode()
    for attempt in record.attempts:
        if attempt.result is Result.REFUSED:
            # The dedupe memory must answer every copy of an acknowledged command.
            checks.answer_mismatches.append(
                f"{record.kind} {record.command_id}: acknowledged, but a {attempt.mode} attempt "
                f"at {attempt.started:.2f}s was refused: {attempt.code} {attempt.detail}"
            )
        if attempt.result is not Result.ACK:
            continue
        checks.acks_checked += 1
        if (attempt.version, attempt.token) != (version, token):
            checks.answer_mismatches.append(
                f"{record.kind} {record.command_id}: a {attempt.mode} attempt at "
                f"{attempt.started:.2f}s answered version {attempt.version} token "
                f"{attempt.token}, the log says version {version} token {token}"
            )
    if not record.retried:
        return
    checks.retried_acknowledged += 1
    first_ack = next(a for a in record.attempts if a.result is Result.ACK)
    decided = source.event.occurred_at.timestamp()
    # occurred_at is truncated to milliseconds: compare with a millisecond to spare.
    if decided + 0.001 < journal.wall_started + first_ack.started:
        checks.answered_from_memory += 1


def _check_balances(journal: Journal, fold: Fold) -> list[str]:
    """The balances and states the clients' answers imply must be those of the log."""
    uncertain: set[str] = set()
    balance: Counter[str] = Counter()
    opened: set[str] = set()
    closed: set[str] = set()
    for record in journal:
        if record.status is Status.UNRESOLVED:
            uncertain.update(record.accounts)
        if record.status is not Status.ACKNOWLEDGED:
            continue
        amount = record.amount or 0
        match record.kind:
            case Kind.OPEN:
                opened.add(record.accounts[0])
            case Kind.DEPOSIT:
                balance[record.accounts[0]] += amount
            case Kind.WITHDRAW:
                balance[record.accounts[0]] -= amount
            case Kind.TRANSFER:
                balance[record.accounts[0]] -= amount
                balance[record.accounts[1]] += amount
            case Kind.CLOSE:
                closed.add(record.accounts[0])
    problems = []
    for account_id in sorted(opened | set(fold.accounts)):
        if account_id in uncertain:
            continue
        account = fold.accounts.get(account_id)
        if account is None:
            problems.append(f"account {account_id}: opened (acknowledged) but not in the log")
            continue
        if account_id not in opened:
            problems.append(
                f"account {account_id}: in the log but its opening was never acknowledged"
            )
            continue
        expected_status = AccountStatus.CLOSED if account_id in closed else AccountStatus.OPEN
        if (account.balance, account.status) != (balance[account_id], expected_status):
            problems.append(
                f"account {account_id}: the answers imply balance {balance[account_id]} "
                f"{expected_status.value}, the log has {account.balance} {account.status.value}"
            )
    return problems


@dataclass(slots=True)
class ReadModelChecks:
    equal: bool
    checksums: dict[str, dict[str, str]]
    """{"fold": {table: sha256}, "read_model": {table: sha256}}"""
    differences: list[str]
    invariants: list[str]
    rows: dict[str, int]


def checksum(rows: Iterable[tuple[object, ...]]) -> str:
    digest = hashlib.sha256()
    for row in sorted(rows, key=lambda r: json.dumps(r, default=str)):
        digest.update(json.dumps(row, default=str).encode())
        digest.update(b"\n")
    return digest.hexdigest()


def check_read_model(fold: Fold, snapshot: Snapshot) -> ReadModelChecks:
    tables: dict[str, tuple[list[tuple[object, ...]], list[tuple[object, ...]]]] = {
        "accounts": (list(fold.account_rows()), list(snapshot.accounts)),
        "movements": (list(fold.movements), list(snapshot.movements)),
        "daily_summaries": (list(fold.day_rows()), list(snapshot.days)),
    }
    checksums: dict[str, dict[str, str]] = {"fold": {}, "read_model": {}}
    differences: list[str] = []
    for table, (expected, actual) in tables.items():
        checksums["fold"][table] = checksum(expected)
        checksums["read_model"][table] = checksum(actual)
        if len(set(actual)) != len(actual):
            differences.append(f"{table}: the read model has duplicate rows")
        missing = set(expected) - set(actual)
        extra = set(actual) - set(expected)
        for row in sorted(missing, key=str)[:5]:
            differences.append(f"{table}: in the fold, not in the read model: {row}")
        for row in sorted(extra, key=str)[:5]:
            differences.append(f"{table}: in the read model, not in the fold: {row}")
        if len(missing) > 5 or len(extra) > 5:
            differences.append(f"{table}: {len(missing)} rows missing, {len(extra)} extra in all")
    equal = not differences and checksums["fold"] == checksums["read_model"]
    return ReadModelChecks(
        equal,
        checksums,
        differences,
        read_model_invariants(snapshot),
        {table: len(actual) for table, (_, actual) in tables.items()},
    )


def read_model_invariants(snapshot: Snapshot) -> list[str]:
    """Invariants of the read model on its own, without the log."""
    problems = []
    by_account: dict[str, list[MovementRow]] = defaultdict(list)
    legs: dict[str, list[MovementRow]] = defaultdict(list)
    for movement in snapshot.movements:
        by_account[movement[1]].append(movement)
        if movement[5] < 0:
            problems.append(f"movement {movement[0]}: negative balance_after {movement[5]}")
        if movement[8] is not None:
            legs[movement[8]].append(movement)
    currency_of = {}
    for account in snapshot.accounts:
        account_id, currency, _, status, balance, version = account[:6]
        currency_of[account_id] = currency
        if balance < 0:
            problems.append(f"account {account_id}: negative balance {balance}")
        moves = sorted(by_account.get(account_id, []), key=lambda m: m[2])
        inflow = sum(m[4] for m in moves if m[3] in _INFLOWS)
        outflow = sum(m[4] for m in moves if m[3] not in _INFLOWS)
        if balance != inflow - outflow:
            problems.append(
                f"account {account_id}: balance {balance} != inflows {inflow} - outflows {outflow}"
            )
        last_movement = version - (1 if status == "CLOSED" else 0)
        if [m[2] for m in moves] != list(range(2, last_movement + 1)):
            problems.append(
                f"account {account_id} at version {version} ({status}): movement versions "
                f"{[m[2] for m in moves][:20]} are not 2..{last_movement}"
            )
        if moves and moves[-1][5] != balance:
            problems.append(
                f"account {account_id}: last balance_after {moves[-1][5]} != balance {balance}"
            )
    days: dict[str, list[DayRow]] = defaultdict(list)
    for day in snapshot.days:
        days[day[0]].append(day)
    for account in snapshot.accounts:
        account_id, balance = account[0], account[4]
        summary = days.get(account_id, [])
        count = sum(d[5] for d in summary)
        if count != len(by_account.get(account_id, [])):
            problems.append(
                f"account {account_id}: daily summaries count {count} movements, "
                f"there are {len(by_account.get(account_id, []))}"
            )
        if sum(d[3] - d[4] for d in summary) != balance:
            problems.append(f"account {account_id}: daily inflows - outflows != balance {balance}")
    totals: dict[str, Counter[str]] = defaultdict(Counter)
    for transfer_id, pair in legs.items():
        kinds = sorted(m[3] for m in pair)
        if kinds != ["TRANSFER_IN", "TRANSFER_OUT"] or pair[0][4] != pair[1][4]:
            problems.append(f"transfer {transfer_id}: read model legs {pair}")
            continue
        for m in pair:
            totals[currency_of.get(m[1], "?")][m[3]] += m[4]
    for currency, total in totals.items():
        if total["TRANSFER_IN"] != total["TRANSFER_OUT"]:
            problems.append(f"{currency}: read model transfers do not net to zero: {dict(total)}")
    return problems
