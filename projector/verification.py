"""Checking a read model against an independent fold of the log.

The fold keeps every account in memory and evolves it with the domain's `evolve`, event after
event, never going through the database; the read model was built batch by batch through
PostgreSQL. Where they disagree (balance, version, status, number of movements; per currency,
the totals of `currency_totals` at each of its widths, money in flight among them; each
transfer's row), the read model is wrong.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from ledger.domain.account import Account
from ledger.domain.decider import evolve
from ledger.events.records import (
    AccountClosed,
    AccountOpened,
    Event,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCredited,
    TransferDebited,
    TransferRefunded,
    TransferSent,
)
from projector.projection import to_minor

_TRANSFER_TYPES = (TransferDebited, TransferCredited, TransferSent, TransferRefunded)
_MOVEMENT_TYPES = (MoneyDeposited, MoneyWithdrawn, *_TRANSFER_TYPES)
_INFLOWS = (MoneyDeposited, TransferCredited, TransferRefunded)
_WIDTHS = ("day", "minute", "second")
_SHOWN_MISMATCHES = 10


class VerificationFailed(RuntimeError):
    """The read model disagrees with the fold of the log; the message lists the differences."""


@dataclass(frozen=True, slots=True)
class AccountSummary:
    """What must agree between the fold and the read model for one account."""

    balance: int
    version: int
    status: str
    movements: int


@dataclass(frozen=True, slots=True)
class TransferSummary:
    """What must agree between the fold and the read model for one transfer: its accounts,
    amount (minor units), whether its debit was cross-shard (None: not seen), and which of its
    steps happened."""

    from_account_id: str
    to_account_id: str
    amount: int
    cross_shard: bool | None
    sent: bool
    credited: bool
    refunded: bool

    @property
    def state(self) -> str:
        return "REFUNDED" if self.refunded else "COMPLETED" if self.credited else "PENDING"


@dataclass(slots=True)
class Fold:
    accounts: dict[str, Account] = field(default_factory=dict)
    movements: Counter[str] = field(default_factory=Counter)
    totals: dict[str, list[int]] = field(default_factory=dict)
    """Per currency: money in and out (minor units), movements, accounts opened, closed, money
    that left and reached accounts by transfer (the difference is in flight)."""
    transfers: dict[str, TransferSummary] = field(default_factory=dict)

    def add(self, events: Iterable[Event]) -> None:
        for event in events:
            account = evolve(self.accounts.get(event.account_id), event)
            self.accounts[event.account_id] = account
            totals = self.totals.setdefault(account.currency, [0, 0, 0, 0, 0, 0, 0])
            if isinstance(event, _MOVEMENT_TYPES):
                self.movements[event.account_id] += 1
                inflow = isinstance(event, _INFLOWS)
                totals[0 if inflow else 1] += event.amount
                totals[2] += 1
                if isinstance(event, _TRANSFER_TYPES):
                    totals[6 if inflow else 5] += event.amount
                    self._add_leg(event)
            elif isinstance(event, AccountOpened):
                totals[3] += 1
            elif isinstance(event, AccountClosed):
                totals[4] += 1

    def _add_leg(
        self, event: TransferDebited | TransferCredited | TransferSent | TransferRefunded
    ) -> None:
        credit = isinstance(event, TransferCredited)
        debit = isinstance(event, TransferDebited | TransferSent)
        known = self.transfers.get(event.transfer_id)
        if known is None:
            from_id, to_id = event.account_id, event.counterparty_id
            if credit:
                from_id, to_id = to_id, from_id
            known = TransferSummary(from_id, to_id, event.amount, None, False, False, False)
        self.transfers[event.transfer_id] = TransferSummary(
            known.from_account_id,
            known.to_account_id,
            known.amount,
            isinstance(event, TransferSent) if debit else known.cross_shard,
            known.sent or debit,
            known.credited or credit,
            known.refunded or isinstance(event, TransferRefunded),
        )

    def summaries(self) -> dict[str, AccountSummary]:
        return {
            account_id: AccountSummary(
                account.balance,
                account.version,
                account.status.name,
                self.movements[account_id],
            )
            for account_id, account in self.accounts.items()
        }


async def read_model_summaries(connection: Any) -> dict[str, AccountSummary]:
    """The same summaries from the read model the connection's search_path points at."""
    rows = await connection.fetch(
        """
        SELECT a.account_id, a.currency, a.balance, a.version, a.status,
               coalesce(m.movements, 0) AS movements
        FROM accounts a
        LEFT JOIN (SELECT account_id, count(*) AS movements FROM movements GROUP BY account_id) m
            USING (account_id)
        """
    )
    orphans = await connection.fetchval(
        "SELECT count(*) FROM movements m"
        " WHERE NOT EXISTS (SELECT 1 FROM accounts a WHERE a.account_id = m.account_id)"
    )
    if orphans:
        raise VerificationFailed(f"{orphans} movements belong to no account")
    return {
        row["account_id"]: AccountSummary(
            to_minor(row["balance"], row["currency"]),
            row["version"],
            row["status"],
            row["movements"],
        )
        for row in rows
    }


def differences(
    expected: dict[str, AccountSummary], actual: dict[str, AccountSummary]
) -> list[str]:
    """Human-readable differences, `expected` being the fold and `actual` the read model."""
    found = []
    for account_id in sorted(expected.keys() | actual.keys()):
        want, got = expected.get(account_id), actual.get(account_id)
        if want != got:
            found.append(f"account {account_id!r}: log says {want}, read model has {got}")
    return found


async def totals_differences(connection: Any, fold: Fold) -> list[str]:
    """How the read model's `currency_totals`, summed at each width, differ from the fold's."""
    rows = await connection.fetch(
        "SELECT width, currency, sum(inflow) AS inflow, sum(outflow) AS outflow,"
        " sum(movement_count) AS moved, sum(opened_count) AS opened,"
        " sum(closed_count) AS closed, sum(transferred_out) AS transferred_out,"
        " sum(transferred_in) AS transferred_in FROM currency_totals GROUP BY width, currency"
    )
    found: dict[str, dict[str, list[int]]] = {width: {} for width in _WIDTHS}
    for row in rows:
        currency = row["currency"]
        found[row["width"]][currency] = [
            to_minor(row["inflow"], currency),
            to_minor(row["outflow"], currency),
            int(row["moved"]),
            int(row["opened"]),
            int(row["closed"]),
            to_minor(row["transferred_out"], currency),
            to_minor(row["transferred_in"], currency),
        ]
    return [
        f"{width} totals of {currency}: log says {fold.totals.get(currency)} (in, out, "
        "movements, opened, closed, transferred out, transferred in), read model has "
        f"{by_currency.get(currency)}"
        for width, by_currency in found.items()
        for currency in sorted(by_currency.keys() | fold.totals.keys())
        if by_currency.get(currency) != fold.totals.get(currency)
    ]


async def transfers_differences(connection: Any, fold: Fold) -> list[str]:
    """How the read model's `transfers` rows differ from the fold's transfers."""
    rows = await connection.fetch(
        "SELECT transfer_id, from_account_id, to_account_id, currency, amount, cross_shard,"
        " sent_at IS NOT NULL AS sent, credited_at IS NOT NULL AS credited,"
        " refunded_at IS NOT NULL AS refunded FROM transfers"
    )
    found = {
        row["transfer_id"]: TransferSummary(
            row["from_account_id"],
            row["to_account_id"],
            to_minor(row["amount"], row["currency"]),
            row["cross_shard"],
            row["sent"],
            row["credited"],
            row["refunded"],
        )
        for row in rows
    }
    return [
        f"transfer {transfer_id!r}: log says {fold.transfers.get(transfer_id)}, read model has "
        f"{found.get(transfer_id)}"
        for transfer_id in sorted(found.keys() | fold.transfers.keys())
        if found.get(transfer_id) != fold.transfers.get(transfer_id)
    ]


async def verify(connection: Any, fold: Fold) -> int:
    """Raise VerificationFailed unless the read model matches `fold`; return the account count."""
    expected = fold.summaries()
    problems = differences(expected, await read_model_summaries(connection))
    problems += await totals_differences(connection, fold)
    problems += await transfers_differences(connection, fold)
    if problems:
        shown = "; ".join(problems[:_SHOWN_MISMATCHES])
        more = len(problems) - _SHOWN_MISMATCHES
        raise VerificationFailed(
            f"{len(problems)} accounts or totals differ from the log: {shown}"
            + (f"; and {more} more" if more > 0 else "")
        )
    return len(expected)
