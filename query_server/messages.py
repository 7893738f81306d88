"""Read-model rows as ledger.v1 messages: exact money strings, timestamps, enums, freshness."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime
from decimal import Decimal
from functools import lru_cache

from google.protobuf.internal.containers import RepeatedCompositeFieldContainer
from google.protobuf.timestamp_pb2 import Timestamp

from ledger.consistency import ConsistencyToken
from ledger.domain.money import currency_exponent, format_amount
from ledger.v1 import queries_pb2 as pb
from query_server.rows import (
    AccountRow,
    BalanceAtRow,
    BalanceRow,
    CheckpointRow,
    CurrencyTotalsRow,
    MovementRow,
    Snapshot,
    SummaryRow,
    TransferRow,
)
from query_server.watch import AccountUpdate

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_STATUS = {"OPEN": pb.ACCOUNT_STATUS_OPEN, "CLOSED": pb.ACCOUNT_STATUS_CLOSED}
_KIND = {
    "DEPOSIT": pb.TRANSACTION_KIND_DEPOSIT,
    "WITHDRAWAL": pb.TRANSACTION_KIND_WITHDRAWAL,
    "TRANSFER_OUT": pb.TRANSACTION_KIND_TRANSFER_OUT,
    "TRANSFER_IN": pb.TRANSACTION_KIND_TRANSFER_IN,
    "TRANSFER_REFUND": pb.TRANSACTION_KIND_TRANSFER_REFUND,
}


def money(amount: Decimal, currency: str) -> str:
    """A NUMERIC amount as the API's decimal string with exactly the currency's places.

    Exact whatever the Decimal context: the digits are shifted, never rounded. An amount with
    more places than the currency allows is corrupt data and raises ValueError.
    """
    exponent = currency_exponent(currency)
    sign, digits, places = amount.as_tuple()
    if places == -exponent and not sign:
        # As PostgreSQL returns a NUMERIC rounded to the currency's scale: its text is already
        # the API's (never in exponent notation with places >= -3).
        return str(amount)
    if not isinstance(places, int):
        raise ValueError(f"amount {amount} is not a finite number")
    coefficient = int("".join(map(str, digits)))
    shift = places + exponent
    if shift >= 0:
        minor = coefficient * 10**shift
    else:
        minor, rest = divmod(coefficient, 10**-shift)
        if rest:
            raise ValueError(f"amount {amount} has more decimal places than {currency} allows")
    return format_amount(-minor if sign else minor, currency)


def timestamp(moment: datetime) -> Timestamp:
    """`moment` (timezone-aware, as asyncpg returns timestamptz) as a Timestamp.

    Plain arithmetic: Timestamp.FromDatetime costs several times more, on every row.
    """
    delta = moment - _EPOCH
    return Timestamp(seconds=delta.days * 86_400 + delta.seconds, nanos=delta.microseconds * 1000)


def day(value: date) -> pb.Date:
    return pb.Date(year=value.year, month=value.month, day=value.day)


def freshness(snapshot: Snapshot) -> pb.Freshness:
    return _freshness(tuple(snapshot.checkpoints.items()), snapshot.as_of)


@lru_cache(maxsize=256)
def _freshness(positions: tuple[tuple[int, int], ...], as_of: datetime | None) -> pb.Freshness:
    # Answers in a row mostly reflect the same checkpoints: build each Freshness once. Safe to
    # share because assigning a message to a field copies it.
    # A partition without any applied event (offset -1) constrains nothing.
    token = ConsistencyToken({p: offset for p, offset in positions if offset >= 0}).encode()
    if as_of is None:
        return pb.Freshness(consistency_token=token)
    return pb.Freshness(consistency_token=token, as_of=timestamp(as_of))


def account(row: AccountRow) -> pb.Account:
    return pb.Account(
        account_id=row.account_id,
        currency=row.currency,
        owner=row.owner,
        status=_STATUS[row.status],
        balance=money(row.balance, row.currency),
        version=row.version,
        opened_at=timestamp(row.opened_at),
        updated_at=timestamp(row.updated_at),
        owner_erased=row.owner_erased,
    )


def transaction(row: MovementRow, currency: str) -> pb.Transaction:
    return pb.Transaction(
        event_id=row.event_id,
        account_id=row.account_id,
        kind=_KIND[row.kind],
        amount=money(row.amount, currency),
        currency=currency,
        balance_after=money(row.balance_after, currency),
        occurred_at=timestamp(row.occurred_at),
        counterparty_account_id=row.counterparty_id or "",
        transfer_id=row.transfer_id or "",
        command_id=row.command_id,
        version=row.version,
        reference=row.reference,
        memo=row.memo,
    )


def balance(row: BalanceRow, snapshot: Snapshot) -> pb.GetBalanceAtResponse:
    return pb.GetBalanceAtResponse(
        account_id=row.account_id,
        currency=row.currency,
        balance=money(row.balance, row.currency),
        version=row.version,
        freshness=freshness(snapshot),
    )


def add_balances_at(
    balances: RepeatedCompositeFieldContainer[pb.BalanceAt], rows: Iterable[BalanceAtRow]
) -> None:
    """Appends a page of accounts as they were at an instant to `balances`.

    The page's cost is mostly this loop: one `add` per row with every field as a keyword (the
    opening time as a mapping) makes no intermediate message or object; docs/performance.md.
    """
    add = balances.add
    open_, closed_ = pb.ACCOUNT_STATUS_OPEN, pb.ACCOUNT_STATUS_CLOSED
    for account_id, currency, balance, version, closed, seconds, nanos, _ in rows:
        add(
            account_id=account_id,
            currency=currency,
            balance=money(balance, currency),
            version=version,
            status=closed_ if closed else open_,
            opened_at={"seconds": seconds, "nanos": nanos},
        )


def currency_totals(row: CurrencyTotalsRow) -> pb.CurrencyTotals:
    return pb.CurrencyTotals(
        currency=row.currency,
        account_count=row.account_count,
        closed_account_count=row.closed_account_count,
        # Every balance starts at zero, so their sum is all that came in less all that went out.
        total_balance=money(row.money_in - row.money_out, row.currency),
        money_in=money(row.money_in, row.currency),
        money_out=money(row.money_out, row.currency),
        movement_count=row.movement_count,
        # What left by transfer and has not arrived (credit or refund) is in flight.
        money_in_flight=money(row.transferred_out - row.transferred_in, row.currency),
        deposited=money(row.money_in - row.transferred_in, row.currency),
        withdrawn=money(row.money_out - row.transferred_out, row.currency),
    )


def transfer(row: TransferRow) -> pb.Transfer:
    if row.refunded_at is not None:
        state = pb.TRANSFER_STATE_REFUNDED
    elif row.credited_at is not None:
        state = pb.TRANSFER_STATE_COMPLETED
    else:
        state = pb.TRANSFER_STATE_PENDING
    message = pb.Transfer(
        transfer_id=row.transfer_id,
        from_account_id=row.from_account_id,
        to_account_id=row.to_account_id,
        amount=money(row.amount, row.currency),
        currency=row.currency,
        state=state,
        cross_shard=bool(row.cross_shard),
        refund_reason=row.refund_reason or "",
    )
    for field, moment in (
        ("sent_at", row.sent_at),
        ("credited_at", row.credited_at),
        ("refunded_at", row.refunded_at),
    ):
        if moment is not None:
            getattr(message, field).CopyFrom(timestamp(moment))
    return message


def summary(row: SummaryRow) -> pb.DailySummary:
    return pb.DailySummary(
        account_id=row.account_id,
        day=day(row.day),
        currency=row.currency,
        inflow=money(row.inflow, row.currency),
        outflow=money(row.outflow, row.currency),
        movement_count=row.movement_count,
        closing_balance=money(row.closing_balance, row.currency),
    )


def partition_status(
    partition: int, checkpoint: CheckpointRow | None, high_watermark: int | None
) -> pb.PartitionStatus:
    applied = -1 if checkpoint is None else checkpoint.last_offset
    status = pb.PartitionStatus(partition=partition, checkpoint_offset=applied)
    if checkpoint is not None:
        status.updated_at.CopyFrom(timestamp(checkpoint.updated_at))
    if high_watermark is not None:
        status.high_watermark = high_watermark
        # The next offset to apply is applied + 1; the high watermark is the next to be written.
        status.lag = max(0, high_watermark - (applied + 1))
    return status


def watch_update(update: AccountUpdate) -> pb.WatchAccountResponse:
    response = pb.WatchAccountResponse(
        account=account(update.account), freshness=freshness(update.snapshot)
    )
    if update.movement is not None:
        response.transaction.CopyFrom(transaction(update.movement, update.account.currency))
    return response
