"""The read model against the fold of the log (row for row, and by checksum), and the read
model's own invariants."""

from __future__ import annotations

import hashlib
import json
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass

from fault_drill.log_fold import Fold
from fault_drill.read_model_snapshot import DayRow, MovementRow, Snapshot

_INFLOWS = ("DEPOSIT", "TRANSFER_IN", "TRANSFER_REFUND")


# A transfer's movements once it ended: its debit and credit, or a cross-shard send (also a
# TRANSFER_OUT) and its refund.
_WHOLE_TRANSFERS = (["TRANSFER_IN", "TRANSFER_OUT"], ["TRANSFER_OUT", "TRANSFER_REFUND"])


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
        "transfers": (list(fold.transfer_rows()), list(snapshot.transfers)),
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
    # Money in flight per currency (zero once every transfer ended), from the read model's
    # totals: what left by transfer less what arrived.
    flying = {c: amount for c, amount in fold.in_flight().items() if amount}
    held = {c: amount for c, amount in snapshot.in_flight.items() if amount}
    if flying != held:
        differences.append(f"money in flight: the fold says {flying}, the read model {held}")
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
    for transfer_id, steps in legs.items():
        kinds = sorted(m[3] for m in steps)
        if kinds not in _WHOLE_TRANSFERS or len({m[4] for m in steps}) != 1:
            problems.append(f"transfer {transfer_id}: read model legs {steps}")
            continue
        for m in steps:
            totals[currency_of.get(m[1], "?")][m[3]] += m[4]
    for currency, total in totals.items():
        if total["TRANSFER_IN"] + total["TRANSFER_REFUND"] != total["TRANSFER_OUT"]:
            problems.append(f"{currency}: read model transfers do not net to zero: {dict(total)}")
    return problems
