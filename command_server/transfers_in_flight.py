"""The debiting shard's memory of its cross-shard transfers (docs/design.md, decision 13).

Which transfers have money in flight (TransferSent, and neither the crediting shard's Credited
notice nor a TransferRefunded yet), per account, and how recently settled ones ended. The
in-flight set is exact, and is what makes every step idempotent on this side: a refusal or a
notice for a transfer not in flight was acted on already and appends nothing. It is a fold of
the log (TransferSent adds, TransferRefunded removes) and of the transfers topic up to what
this shard committed having processed (a Credited notice removes); start-up rebuilds it so
(startup.py). The memory of settled transfers only answers retries and waiting calls, so it is
bounded: past `remembered` transfers the oldest are forgotten (and a start remembers only what
it read after its snapshot), and the caller is told PENDING (and how to learn the end) at once
rather than a guess.
"""

from __future__ import annotations

from collections import OrderedDict

from ledger.domain.saga import InFlight
from ledger.events.records import TransferSent

PENDING, COMPLETED, REFUNDED, FORGOTTEN = range(4)
"""A cross-shard transfer's state, as the debiting shard knows it. FORGOTTEN: not in flight, so
settled, but how is no longer in memory (before the last snapshot, or long ago)."""

REMEMBERED = 100_000
"""Settled transfers whose end is kept for retries and waiting calls."""


class TransfersInFlight:
    def __init__(self, remembered: int = REMEMBERED) -> None:
        self.sent: dict[str, InFlight] = {}
        """Transfer id -> what a refund needs of it, while its money is in flight."""
        self._per_account: dict[str, int] = {}
        self._settled: OrderedDict[str, tuple[int, str]] = OrderedDict()
        self._remembered = remembered

    def add(self, event: TransferSent | InFlight) -> None:
        sent = event if isinstance(event, InFlight) else InFlight.of(event)
        self.sent[sent.transfer_id] = sent
        account = sent.account_id
        self._per_account[account] = self._per_account.get(account, 0) + 1

    def settle(self, transfer_id: str, state: int, reason: str = "") -> bool:
        """Record the end of a transfer; False if it was not in flight (nothing to do)."""
        event = self.sent.pop(transfer_id, None)
        if event is None:
            return False
        account = event.account_id
        left = self._per_account[account] - 1
        if left:
            self._per_account[account] = left
        else:
            del self._per_account[account]
        self._settled[transfer_id] = (state, reason)
        if len(self._settled) > self._remembered:
            self._settled.popitem(last=False)
        return True

    def of_account(self, account_id: str) -> int:
        """How many of the account's transfers have money in flight."""
        return self._per_account.get(account_id, 0)

    def state(self, transfer_id: str) -> tuple[int, str]:
        """(PENDING, "") while in flight; (COMPLETED, ""), (REFUNDED, reason) or FORGOTTEN.
        Asked only about transfers whose debit this shard applied."""
        if transfer_id in self.sent:
            return PENDING, ""
        return self._settled.get(transfer_id, (FORGOTTEN, ""))

    def of_accounts(self, account_ids: set[str]) -> list[InFlight]:
        """The transfers in flight from `account_ids` (a partition's, for its snapshot)."""
        return [s for s in self.sent.values() if s.account_id in account_ids]
