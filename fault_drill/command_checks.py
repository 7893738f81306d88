"""The journal against the log: every acknowledged command in it exactly once, with the effect,
version and token its answers carried; nothing refused or never sent in it."""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field

from fault_drill.event_log import LogRecord
from fault_drill.journal import (
    EVENTS_PER_COMMAND,
    OK,
    CommandRecord,
    Journal,
    Kind,
    Result,
    Status,
)
from fault_drill.log_fold import Fold
from ledger.consistency import ConsistencyToken
from ledger.domain.account import AccountStatus
from ledger.events.records import (
    AccountClosed,
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCredited,
    TransferDebited,
    TransferRefunded,
    TransferSent,
)


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
            if found and not _refunded(found):
                checks.refused_but_applied.append(
                    f"{label}: refused with {record.refusal} but {len(found)} events are in the log"
                )
            if record.expect != record.refusal and not _refund_answer(record.refusal, found):
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


_EVENT_OF = {
    Kind.OPEN: AccountOpened,
    Kind.DEPOSIT: MoneyDeposited,
    Kind.WITHDRAW: MoneyWithdrawn,
    Kind.CLOSE: AccountClosed,
}
"""The one event each kind of command but a transfer has."""


def _check_effects(record: CommandRecord, found: list[LogRecord], checks: CommandChecks) -> None:
    events = [r.event for r in found]
    if not _effects_match(record, events):
        checks.wrong_effects.append(
            f"{record.kind} {record.command_id}: the log has {events}, the request was "
            f"{record.request}"
        )


def _effects_match(record: CommandRecord, events: Sequence[object]) -> bool:
    accounts = record.accounts
    if record.kind is Kind.TRANSFER:
        # Same shard: debit and credit in one transaction. Across shards (the saga of decision
        # 13): the send, then the credit on the other shard or the refund on this one.
        debit = next((e for e in events if isinstance(e, TransferDebited | TransferSent)), None)
        end = next((e for e in events if isinstance(e, TransferCredited | TransferRefunded)), None)
        if debit is None or end is None:
            return False
        if isinstance(debit, TransferDebited) and not isinstance(end, TransferCredited):
            return False
        ended_on = accounts[0] if isinstance(end, TransferRefunded) else accounts[1]
        return (
            debit.account_id == accounts[0]
            and end.account_id == ended_on
            and debit.amount == end.amount == record.amount
            and debit.transfer_id == end.transfer_id == record.command_id
        )
    (event,) = events
    if not isinstance(event, _EVENT_OF[record.kind]):
        return False
    match event:
        case AccountOpened(account_id=account_id, currency=currency):
            return account_id == accounts[0] and currency == record.currency
        case (
            MoneyDeposited(account_id=account_id, amount=amount)
            | MoneyWithdrawn(account_id=account_id, amount=amount)
        ):
            return account_id == accounts[0] and amount == record.amount
        case AccountClosed(account_id=account_id):
            return account_id == accounts[0]
    return False


def _refund_answer(code: str | None, found: Sequence[LogRecord]) -> bool:
    """Whether `code` is how the server answers a transfer (or a copy of it) once the saga is
    known to have ended refunded: FAILED_PRECONDITION, the money back on the source (the report
    counts the refunds; the drill's clients provoke none)."""
    return code == "FAILED_PRECONDITION" and _refunded(found)


def _refunded(found: Sequence[LogRecord]) -> bool:
    """Whether the command is a cross-shard transfer whose money came back (sent, then refunded
    by the saga): refused in the end, and with no net effect on any balance."""
    return any(isinstance(r.event, TransferRefunded) for r in found)


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
    # A cross-shard transfer is answered once its send is written: its token covers the send.
    answered_by = [source] if isinstance(source.event, TransferSent) else found
    for r in answered_by:
        positions[r.partition] = max(r.offset, positions.get(r.partition, -1))
    token = ConsistencyToken(positions).encode()
    for attempt in record.attempts:
        if attempt.result is Result.REFUSED and not _refund_answer(attempt.code, found):
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
                if not _refunded(fold.by_command.get(record.command_id, [])):
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
