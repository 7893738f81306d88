"""The reads over many accounts at once: `get_accounts`, `list_balances_at`, `get_trial_balance`,
and `get_transfer` (a transfer names two).

A mixin of `LedgerClient` (which fills in the hooks below), kept apart so that each module stays
small; a `Session` passes its token to these as to every read.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import IntEnum
from typing import TypeVar

from ledger_client import results as r
from ledger_client.money import parse_amount
from ledger_client.v1 import queries_pb2 as qpb
from ledger_client.v1 import queries_pb2_grpc as qgrpc

T = TypeVar("T")


@dataclass(frozen=True)
class Accounts:
    """The accounts found, and the ids asked for that name no account."""

    accounts: list[r.Account]
    missing: list[str]
    freshness: r.Freshness


@dataclass(frozen=True)
class AccountAt:
    """One account as it was at a point in time."""

    account_id: str
    currency: str
    balance: Decimal
    version: int
    status: r.AccountStatus
    opened_at: datetime | None


@dataclass(frozen=True)
class CurrencyTotals:
    """One currency's line of a trial balance."""

    currency: str
    account_count: int
    closed_account_count: int
    total_balance: Decimal
    money_in: Decimal
    money_out: Decimal
    movement_count: int
    money_in_flight: Decimal = Decimal(0)
    """Sent to an account of another shard, neither credited nor refunded by then:
    `total_balance` + `money_in_flight` = `deposited` - `withdrawn`."""
    deposited: Decimal = Decimal(0)
    withdrawn: Decimal = Decimal(0)


class TransferState(IntEnum):
    PENDING = qpb.TRANSFER_STATE_PENDING
    """A cross-shard transfer's money is in flight: ask again (or read the accounts' history)."""
    COMPLETED = qpb.TRANSFER_STATE_COMPLETED
    REFUNDED = qpb.TRANSFER_STATE_REFUNDED


@dataclass(frozen=True)
class Transfer:
    """Where a transfer stands; times are None for the steps not (yet) seen."""

    transfer_id: str
    from_account_id: str
    to_account_id: str
    amount: Decimal
    currency: str
    state: TransferState
    cross_shard: bool
    sent_at: datetime | None
    credited_at: datetime | None
    refunded_at: datetime | None
    refund_reason: str
    freshness: r.Freshness


@dataclass(frozen=True)
class TrialBalance:
    currencies: list[CurrencyTotals]
    freshness: r.Freshness


class ManyAccountReads:
    _queries: qgrpc.QueryServiceStub

    # Hooks LedgerClient (and Session) fill in.
    def _query(self, method: Callable[..., T], request: object, timeout: float | None) -> T:
        raise NotImplementedError

    def _read_token(self, explicit: str | None) -> str:
        raise NotImplementedError

    def _saw(self, token: str) -> None:
        raise NotImplementedError

    def get_accounts(
        self,
        account_ids: Sequence[str],
        *,
        consistency_token: str | None = None,
        timeout: float | None = None,
    ) -> Accounts:
        """Up to 1,000 accounts by id, in one call."""
        request = qpb.GetAccountsRequest(
            account_ids=account_ids, consistency_token=self._read_token(consistency_token)
        )
        reply = self._query(self._queries.GetAccounts, request, timeout)
        self._saw(reply.freshness.consistency_token)
        fresh = r.freshness(reply.freshness)
        return Accounts(
            [r.account(item, fresh) for item in reply.accounts], list(reply.missing), fresh
        )

    def list_balances_at(
        self,
        at: datetime,
        *,
        account_id_prefix: str = "",
        page_size: int = 0,
        page_token: str = "",
        consistency_token: str | None = None,
        timeout: float | None = None,
    ) -> r.Page[AccountAt]:
        """Every account (or those whose id starts with `account_id_prefix`) as it was at `at`,
        in ascending id order, a page at a time."""
        request = qpb.ListBalancesAtRequest(
            at=r.to_timestamp(at),
            account_id_prefix=account_id_prefix,
            page_size=page_size,
            page_token=page_token,
            consistency_token=self._read_token(consistency_token),
        )
        reply = self._query(self._queries.ListBalancesAt, request, timeout)
        self._saw(reply.freshness.consistency_token)
        items = [
            AccountAt(
                item.account_id,
                item.currency,
                parse_amount(item.balance),
                item.version,
                r.AccountStatus(item.status),
                r.timestamp(item.opened_at, item.HasField("opened_at")),
            )
            for item in reply.balances
        ]
        return r.Page(items, reply.next_page_token, r.freshness(reply.freshness))

    def get_trial_balance(
        self, at: datetime, *, consistency_token: str | None = None, timeout: float | None = None
    ) -> TrialBalance:
        """Per currency at `at`: the accounts, their total balance, the money in and out."""
        request = qpb.GetTrialBalanceRequest(
            at=r.to_timestamp(at), consistency_token=self._read_token(consistency_token)
        )
        reply = self._query(self._queries.GetTrialBalance, request, timeout)
        self._saw(reply.freshness.consistency_token)
        totals = [
            CurrencyTotals(
                item.currency,
                item.account_count,
                item.closed_account_count,
                parse_amount(item.total_balance),
                parse_amount(item.money_in),
                parse_amount(item.money_out),
                item.movement_count,
                # Empty from a server older than cross-shard transfers: nothing in flight.
                parse_amount(item.money_in_flight or "0"),
                parse_amount(item.deposited or item.money_in),
                parse_amount(item.withdrawn or item.money_out),
            )
            for item in reply.currencies
        ]
        return TrialBalance(totals, r.freshness(reply.freshness))

    def get_transfer(
        self,
        transfer_id: str,
        *,
        consistency_token: str | None = None,
        timeout: float | None = None,
    ) -> Transfer:
        """A transfer by its id (the Transfer command's id): PENDING while a cross-shard
        transfer's money is in flight, then COMPLETED or REFUNDED."""
        request = qpb.GetTransferRequest(
            transfer_id=transfer_id, consistency_token=self._read_token(consistency_token)
        )
        reply = self._query(self._queries.GetTransfer, request, timeout)
        self._saw(reply.freshness.consistency_token)
        item = reply.transfer
        return Transfer(
            item.transfer_id,
            item.from_account_id,
            item.to_account_id,
            parse_amount(item.amount),
            item.currency,
            TransferState(item.state),
            item.cross_shard,
            r.timestamp(item.sent_at, item.HasField("sent_at")),
            r.timestamp(item.credited_at, item.HasField("credited_at")),
            r.timestamp(item.refunded_at, item.HasField("refunded_at")),
            item.refund_reason,
            r.freshness(reply.freshness),
        )
