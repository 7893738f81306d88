"""What a valid request asks for: checks every field and turns a request into a typed query.

Anything malformed raises InvalidArgument with a message naming the field, before any I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from typing import TypeVar

from google.protobuf.timestamp_pb2 import Timestamp

from ledger.consistency import ConsistencyToken
from ledger.domain.rejection import Rejection
from ledger.domain.validation import (
    MAX_COMMAND_ID_LENGTH,
    MAX_REFERENCE_LENGTH,
    require_account_id,
    require_currency,
    require_printable,
    require_text,
)
from ledger.v1 import queries_pb2 as pb
from query_server import page_tokens
from query_server.errors import InvalidArgument
from query_server.page_tokens import Filters, Key, PageTokens

ACCOUNTS_PAGE = (50, 500)
TRANSACTIONS_PAGE = (100, 1000)
SUMMARIES_PAGE = (100, 1000)
BALANCES_PAGE = (500, 5000)
"""(default, maximum) page sizes, as documented in queries.proto."""

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# google.protobuf.Timestamp's documented range: 0001-01-01T00:00:00Z to 9999-12-31T23:59:59Z.
_MIN_SECONDS = -62_135_596_800
_MAX_SECONDS = 253_402_300_799
_MAX_VERSION = 2**63 - 1

_T = TypeVar("_T")

_STATUS_FILTERS: dict[int, str | None] = {
    pb.ACCOUNT_STATUS_UNSPECIFIED: None,
    pb.ACCOUNT_STATUS_OPEN: "OPEN",
    pb.ACCOUNT_STATUS_CLOSED: "CLOSED",
}
_DESCENDING: dict[int, bool] = {
    pb.SORT_ORDER_UNSPECIFIED: False,
    pb.SORT_ORDER_ASCENDING: False,
    pb.SORT_ORDER_DESCENDING: True,
}


@dataclass(frozen=True, slots=True)
class Page:
    """Where a page starts and how long it may be; `after` is None on the first page."""

    size: int
    after: Key | None
    tokens: PageTokens
    filters: Filters

    def token_after(self, key: Key | None) -> str:
        """The next_page_token resuming after `key`; empty when there is no next page."""
        return "" if key is None else self.tokens.encode(self.filters, key)


@dataclass(frozen=True, slots=True)
class AccountsQuery:
    status: str | None
    currency: str | None
    page: Page


@dataclass(frozen=True, slots=True)
class TransactionsQuery:
    account_id: str
    start: datetime | None
    """Inclusive."""
    end: datetime | None
    """Exclusive."""
    descending: bool
    page: Page
    reference: str = ""
    """Only movements with exactly this reference; "" for every movement."""


@dataclass(frozen=True, slots=True)
class SummariesQuery:
    account_id: str | None
    first_day: date
    last_day: date
    page: Page


@dataclass(frozen=True, slots=True)
class BalancesQuery:
    at: datetime
    """Inclusive."""
    prefix: str | None
    page: Page


def account_id(value: str, field: str = "account_id") -> str:
    try:
        require_account_id(value, field)
    except Rejection as exc:
        raise InvalidArgument(exc.message) from None
    return value


def transfer_id(value: str) -> str:
    """GetTransfer's id: a command id as the command server takes them (printable, bounded);
    whether it names a transfer is the read model's to say."""
    if not value:
        raise InvalidArgument("transfer_id is required: the command_id of the Transfer")
    if len(value) > MAX_COMMAND_ID_LENGTH:
        raise InvalidArgument(
            f"transfer_id is {len(value)} characters long; a command id has at most "
            f"{MAX_COMMAND_ID_LENGTH}"
        )
    try:
        require_printable(value, "transfer_id")
    except Rejection as exc:
        raise InvalidArgument(exc.message) from None
    return value


MAX_ACCOUNT_IDS = 1_000
"""Account ids one GetAccounts may ask for: one statement of a thousand key lookups."""


def account_ids(values: Sequence[str]) -> list[str]:
    """GetAccounts' ids, each checked, in order of first mention (a repeated id is read once)."""
    if not 1 <= len(values) <= MAX_ACCOUNT_IDS:
        raise InvalidArgument(
            f"account_ids holds {len(values)} ids: ask for 1 to {MAX_ACCOUNT_IDS:,} per call"
        )
    for index, value in enumerate(values):
        account_id(value, f"account_ids[{index}]")
    return list(dict.fromkeys(values))


def consistency_token(text: str) -> ConsistencyToken | None:
    """The position to wait for; None when the request carries no token."""
    if not text:
        return None
    try:
        return ConsistencyToken.decode(text)
    except ValueError as exc:
        raise InvalidArgument(f"consistency_token: {exc}") from None


def list_accounts(request: pb.ListAccountsRequest) -> AccountsQuery:
    status = _choice(_STATUS_FILTERS, request.status, "status")
    currency = None
    if request.currency:
        try:
            require_currency(request.currency)
        except Rejection as exc:
            raise InvalidArgument(exc.message) from None
        currency = request.currency
    filters = {"status": status, "currency": currency}
    page = _page(
        request.page_size, request.page_token, ACCOUNTS_PAGE, page_tokens.ACCOUNTS, filters
    )
    if page.after is not None:
        account_id(str(page.after[0]), "page_token")
    return AccountsQuery(status, currency, page)


def list_transactions(request: pb.ListTransactionsRequest) -> TransactionsQuery:
    account = account_id(request.account_id)
    # Stored times have microsecond precision: rounding both bounds up keeps `start <= t < end`
    # exact for every stored t.
    start = _time(request.start_time, "start_time", ceil=True, given=request.HasField("start_time"))
    end = _time(request.end_time, "end_time", ceil=True, given=request.HasField("end_time"))
    if start is not None and end is not None and start > end:
        raise InvalidArgument(
            f"start_time ({start.isoformat()}) is after end_time ({end.isoformat()})"
        )
    descending = _choice(_DESCENDING, request.order, "order")
    try:
        # A reference no command could have given is a mistake, not a filter matching nothing.
        require_text(request.reference, "reference", MAX_REFERENCE_LENGTH)
    except Rejection as exc:
        raise InvalidArgument(exc.message) from None
    filters: dict[str, str | int | None] = {
        "account_id": account,
        "start": _micros(start),
        "end": _micros(end),
        "descending": int(descending),
    }
    if request.reference:
        # Only when given, so that tokens issued before the filter existed stay valid.
        filters["reference"] = request.reference
    page = _page(
        request.page_size, request.page_token, TRANSACTIONS_PAGE, page_tokens.TRANSACTIONS, filters
    )
    if page.after is not None and not 0 <= int(page.after[0]) <= _MAX_VERSION:
        raise InvalidArgument("page_token is malformed: version out of range")
    return TransactionsQuery(account, start, end, descending, page, request.reference)


def balance_at(request: pb.GetBalanceAtRequest) -> tuple[str, datetime]:
    account = account_id(request.account_id)
    return account, instant(request, "the balance")


def balances_at(request: pb.ListBalancesAtRequest) -> BalancesQuery:
    at = instant(request, "the balances")
    prefix = request.account_id_prefix
    if prefix:
        account_id(prefix, "account_id_prefix")
    filters = {"at": _micros(at), "prefix": prefix or None}
    page = _page(
        request.page_size, request.page_token, BALANCES_PAGE, page_tokens.BALANCES_AT, filters
    )
    if page.after is not None:
        account_id(str(page.after[0]), "page_token")
    return BalancesQuery(at, prefix or None, page)


def instant(
    request: pb.GetBalanceAtRequest | pb.ListBalancesAtRequest | pb.GetTrialBalanceRequest,
    what: str,
) -> datetime:
    """The request's required `at`."""
    # Rounding down keeps "movements at or before `at`" exact at microsecond precision.
    at = _time(request.at, "at", ceil=False, given=request.HasField("at"))
    if at is None:
        raise InvalidArgument(f"at is required: the point in time to read {what} at")
    return at


def daily_summaries(request: pb.GetDailySummariesRequest) -> SummariesQuery:
    account = account_id(request.account_id) if request.account_id else None
    if not request.HasField("first_day") or not request.HasField("last_day"):
        raise InvalidArgument("first_day and last_day are required")
    first_day = _day(request.first_day, "first_day")
    last_day = _day(request.last_day, "last_day")
    if first_day > last_day:
        raise InvalidArgument(f"first_day ({first_day}) is after last_day ({last_day})")
    filters = {
        "account_id": account,
        "first": first_day.toordinal(),
        "last": last_day.toordinal(),
    }
    page = _page(
        request.page_size,
        request.page_token,
        SUMMARIES_PAGE,
        page_tokens.DAILY_SUMMARIES,
        filters,
    )
    if page.after is not None:
        day_ordinal, after_account = page.after
        if not 1 <= int(day_ordinal) <= date.max.toordinal():
            raise InvalidArgument("page_token is malformed: day out of range")
        account_id(str(after_account), "page_token")
    return SummariesQuery(account, first_day, last_day, page)


def _page(
    size: int,
    token: str,
    sizes: tuple[int, int],
    tokens: PageTokens,
    filters: Filters,
) -> Page:
    default, maximum = sizes
    if size < 0:
        raise InvalidArgument(f"page_size must not be negative, got {size}")
    after = tokens.decode(token, filters) if token else None
    return Page(min(size or default, maximum), after, tokens, filters)


def _choice(choices: dict[int, _T], value: int, field: str) -> _T:
    try:
        return choices[value]
    except KeyError:
        raise InvalidArgument(f"{field}: unknown value {value}") from None


def _time(timestamp: Timestamp, field: str, *, ceil: bool, given: bool) -> datetime | None:
    """A request timestamp at microsecond precision; None when the field is not `given`."""
    if not given:
        return None
    invalid = InvalidArgument(
        f"{field} is not a valid timestamp: it must lie between 0001-01-01 and 9999-12-31, with "
        "nanos from 0 to 999999999"
    )
    if not (_MIN_SECONDS <= timestamp.seconds <= _MAX_SECONDS and 0 <= timestamp.nanos < 10**9):
        raise invalid
    micros = -(-timestamp.nanos // 1000) if ceil else timestamp.nanos // 1000
    try:
        return _EPOCH + timedelta(seconds=timestamp.seconds, microseconds=micros)
    except OverflowError:  # rounding up the very last representable instant
        raise invalid from None


def _micros(moment: datetime | None) -> int | None:
    return None if moment is None else (moment - _EPOCH) // timedelta(microseconds=1)


def _day(value: pb.Date, field: str) -> date:
    try:
        return date(value.year, value.month, value.day)
    except ValueError:
        raise InvalidArgument(
            f"{field} is not a calendar date: {value.year:04d}-{value.month:02d}-{value.day:02d}"
        ) from None
