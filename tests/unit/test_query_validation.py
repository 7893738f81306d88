"""Request validation: malformed requests are refused with a message before any I/O."""

from __future__ import annotations

from datetime import UTC, date, datetime

import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from ledger.consistency import ConsistencyToken
from ledger.environment import SettingsError
from ledger.v1 import queries_pb2 as pb
from query_server import validation
from query_server.errors import InvalidArgument
from query_server.settings import Settings


def _ts(seconds: int, nanos: int = 0) -> Timestamp:
    return Timestamp(seconds=seconds, nanos=nanos)


@pytest.mark.parametrize("account_id", ["", "has space", "x" * 65, "ünïcode", "a/b"])
def test_bad_account_ids_are_invalid(account_id: str) -> None:
    with pytest.raises(InvalidArgument, match="account_id"):
        validation.account_id(account_id)


@pytest.mark.parametrize(
    ("size", "expected"), [(0, 50), (1, 1), (500, 500), (501, 500), (2**31 - 1, 500)]
)
def test_account_page_size_defaults_and_is_capped_as_documented(size: int, expected: int) -> None:
    query = validation.list_accounts(pb.ListAccountsRequest(page_size=size))
    assert query.page.size == expected


@pytest.mark.parametrize(("size", "expected"), [(0, 100), (1000, 1000), (1001, 1000)])
def test_transaction_and_summary_page_sizes(size: int, expected: int) -> None:
    transactions = validation.list_transactions(
        pb.ListTransactionsRequest(account_id="a", page_size=size)
    )
    summaries = validation.daily_summaries(
        pb.GetDailySummariesRequest(
            first_day=pb.Date(year=2024, month=1, day=1),
            last_day=pb.Date(year=2024, month=1, day=1),
            page_size=size,
        )
    )
    assert transactions.page.size == summaries.page.size == expected


def test_a_negative_page_size_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="page_size"):
        validation.list_accounts(pb.ListAccountsRequest(page_size=-1))


def test_filters_are_checked() -> None:
    with pytest.raises(InvalidArgument, match="currency"):
        validation.list_accounts(pb.ListAccountsRequest(currency="usd"))
    with pytest.raises(InvalidArgument, match="status"):
        validation.list_accounts(pb.ListAccountsRequest(status=7))  # type: ignore[arg-type]
    with pytest.raises(InvalidArgument, match="order"):
        validation.list_transactions(
            pb.ListTransactionsRequest(account_id="a", order=9)  # type: ignore[arg-type]
        )
    query = validation.list_accounts(
        pb.ListAccountsRequest(status=pb.ACCOUNT_STATUS_CLOSED, currency="JPY")
    )
    assert (query.status, query.currency) == ("CLOSED", "JPY")


def test_the_next_page_token_only_works_with_the_same_filters() -> None:
    first = validation.list_accounts(pb.ListAccountsRequest(currency="USD"))
    token = first.page.token_after(("acc-9",))
    again = validation.list_accounts(pb.ListAccountsRequest(currency="USD", page_token=token))
    assert again.page.after == ("acc-9",)
    # A different page size is fine: only the filters are bound.
    resized = validation.list_accounts(
        pb.ListAccountsRequest(currency="USD", page_token=token, page_size=3)
    )
    assert resized.page.after == ("acc-9",)
    with pytest.raises(InvalidArgument, match="different"):
        validation.list_accounts(pb.ListAccountsRequest(currency="EUR", page_token=token))
    assert first.page.token_after(None) == ""


def test_transaction_tokens_are_bound_to_account_range_and_order() -> None:
    request = pb.ListTransactionsRequest(account_id="a", start_time=_ts(10))
    token = validation.list_transactions(request).page.token_after((5,))
    for other in (
        pb.ListTransactionsRequest(account_id="b", start_time=_ts(10)),
        pb.ListTransactionsRequest(account_id="a", start_time=_ts(11)),
        pb.ListTransactionsRequest(account_id="a", start_time=_ts(10), end_time=_ts(20)),
        pb.ListTransactionsRequest(
            account_id="a", start_time=_ts(10), order=pb.SORT_ORDER_DESCENDING
        ),
    ):
        other.page_token = token
        with pytest.raises(InvalidArgument, match="different"):
            validation.list_transactions(other)
    request.page_token = token
    assert validation.list_transactions(request).page.after == (5,)


def test_an_inverted_time_range_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match=r"start_time .* is after end_time"):
        validation.list_transactions(
            pb.ListTransactionsRequest(account_id="a", start_time=_ts(20), end_time=_ts(10))
        )
    empty = validation.list_transactions(
        pb.ListTransactionsRequest(account_id="a", start_time=_ts(10), end_time=_ts(10))
    )
    assert empty.start == empty.end


def test_an_unset_time_is_no_bound_but_the_epoch_is_a_bound() -> None:
    unbounded = validation.list_transactions(pb.ListTransactionsRequest(account_id="a"))
    assert (unbounded.start, unbounded.end) == (None, None)
    from_epoch = validation.list_transactions(
        pb.ListTransactionsRequest(account_id="a", start_time=_ts(0))
    )
    assert from_epoch.start == datetime(1970, 1, 1, tzinfo=UTC)


def test_sub_microsecond_bounds_keep_the_documented_inclusivity() -> None:
    # Stored times have microseconds: t >= start and t < end round up, t <= at rounds down.
    query = validation.list_transactions(
        pb.ListTransactionsRequest(account_id="a", start_time=_ts(0, 1), end_time=_ts(0, 1001))
    )
    assert query.start == datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)
    assert query.end == datetime(1970, 1, 1, 0, 0, 0, 2, tzinfo=UTC)
    _, at = validation.balance_at(pb.GetBalanceAtRequest(account_id="a", at=_ts(0, 1999)))
    assert at == datetime(1970, 1, 1, 0, 0, 0, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    "timestamp",
    [_ts(253_402_300_800), _ts(-62_135_596_801), _ts(0, -1), _ts(0, 10**9)],
)
def test_out_of_range_timestamps_are_invalid(timestamp: Timestamp) -> None:
    with pytest.raises(InvalidArgument, match="not a valid timestamp"):
        validation.balance_at(pb.GetBalanceAtRequest(account_id="a", at=timestamp))


def test_the_last_instant_cannot_be_rounded_up() -> None:
    with pytest.raises(InvalidArgument, match="end_time"):
        validation.list_transactions(
            pb.ListTransactionsRequest(account_id="a", end_time=_ts(253_402_300_799, 999_999_999))
        )


def test_balance_at_needs_a_time() -> None:
    with pytest.raises(InvalidArgument, match="at is required"):
        validation.balance_at(pb.GetBalanceAtRequest(account_id="a"))


def test_daily_summary_days_are_checked() -> None:
    day = pb.Date(year=2024, month=3, day=1)
    with pytest.raises(InvalidArgument, match="required"):
        validation.daily_summaries(pb.GetDailySummariesRequest(first_day=day))
    with pytest.raises(InvalidArgument, match="last_day is not a calendar date: 2023-02-29"):
        validation.daily_summaries(
            pb.GetDailySummariesRequest(first_day=day, last_day=pb.Date(year=2023, month=2, day=29))
        )
    with pytest.raises(InvalidArgument, match=r"first_day .* is after last_day"):
        validation.daily_summaries(
            pb.GetDailySummariesRequest(first_day=day, last_day=pb.Date(year=2024, month=2, day=1))
        )
    whole_ledger = validation.daily_summaries(
        pb.GetDailySummariesRequest(first_day=day, last_day=day)
    )
    assert (whole_ledger.account_id, whole_ledger.first_day) == (None, date(2024, 3, 1))


def test_consistency_tokens_are_decoded_or_invalid() -> None:
    assert validation.consistency_token("") is None
    token = ConsistencyToken({0: 5, 3: 1})
    assert validation.consistency_token(token.encode()) == token
    for garbage in ("garbage", "v1.!!!", "v1." + "A" * 5000):
        with pytest.raises(InvalidArgument, match="consistency_token"):
            validation.consistency_token(garbage)


def test_settings_come_from_the_environment() -> None:
    settings = Settings.from_env(
        {
            "LEDGER_DATABASE_URL": "postgresql://x@h/db",
            "LEDGER_QUERY_ADDR": "0.0.0.0:1",
            "LEDGER_QUERY_POOL_SIZE": "2",
        }
    )
    assert (settings.database.url, settings.listen, settings.pool_size) == (
        "postgresql://x@h/db",
        "0.0.0.0:1",
        2,
    )
    assert (settings.topic, settings.kafka_bootstrap) == ("account_events", None)
    for bad in ({"LEDGER_QUERY_POOL_SIZE": "0"}, {"LEDGER_QUERY_DEFAULT_WAIT_SECONDS": "nan"}):
        with pytest.raises(SettingsError):
            Settings.from_env(bad)


_MEGABYTE = 1_000_000


@pytest.mark.parametrize(
    ("request_", "field"),
    [
        (pb.GetAccountRequest(account_id="a" * _MEGABYTE), "account_id"),
        (pb.GetAccountRequest(account_id="acc\x00"), "account_id"),
        (pb.ListAccountsRequest(currency="U" * _MEGABYTE), "currency"),
        (pb.ListAccountsRequest(currency="US\x00"), "currency"),
        (pb.ListAccountsRequest(page_token="A" * _MEGABYTE), "page_token"),
        (pb.ListAccountsRequest(page_token="\x00\u202e"), "page_token"),
        (pb.GetAccountRequest(account_id="a", consistency_token="v1." + "A" * _MEGABYTE), "token"),
        (pb.GetAccountRequest(account_id="a", consistency_token="\x00" * _MEGABYTE), "token"),
    ],
)
def test_huge_or_control_character_fields_are_refused_in_a_short_message(
    request_: pb.GetAccountRequest | pb.ListAccountsRequest, field: str
) -> None:
    with pytest.raises(InvalidArgument) as refused:
        _validate(request_)
    assert field in refused.value.message
    assert len(refused.value.message) < 300


def _validate(request: pb.GetAccountRequest | pb.ListAccountsRequest) -> None:
    """What the servicer checks of `request` before any I/O."""
    if isinstance(request, pb.ListAccountsRequest):
        validation.list_accounts(request)
    else:
        validation.account_id(request.account_id)
    validation.consistency_token(request.consistency_token)


def test_balances_at_need_an_instant_and_a_valid_prefix() -> None:
    with pytest.raises(InvalidArgument, match="at is required"):
        validation.balances_at(pb.ListBalancesAtRequest())
    with pytest.raises(InvalidArgument, match="account_id_prefix"):
        validation.balances_at(pb.ListBalancesAtRequest(at=_ts(0), account_id_prefix="a b"))
    with pytest.raises(InvalidArgument, match="at is not a valid timestamp"):
        validation.balances_at(pb.ListBalancesAtRequest(at=_ts(2**40)))
    with pytest.raises(InvalidArgument, match="at is required: the point in time to read the tr"):
        validation.instant(pb.GetTrialBalanceRequest(), "the trial balance")
    query = validation.balances_at(pb.ListBalancesAtRequest(at=_ts(1, 1999), page_size=9000))
    assert query.at == datetime(1970, 1, 1, 0, 0, 1, 1, tzinfo=UTC)  # rounded down
    assert (query.page.size, query.prefix) == (5000, None)
    assert validation.balances_at(pb.ListBalancesAtRequest(at=_ts(1))).page.size == 500


def test_a_balances_page_token_resumes_only_the_same_listing() -> None:
    first = validation.balances_at(pb.ListBalancesAtRequest(at=_ts(5), account_id_prefix="ac"))
    token = first.page.token_after(("acme-7",))
    again = validation.balances_at(
        pb.ListBalancesAtRequest(at=_ts(5), account_id_prefix="ac", page_token=token)
    )
    assert again.page.after == ("acme-7",)
    for other in (
        pb.ListBalancesAtRequest(at=_ts(6), account_id_prefix="ac", page_token=token),
        pb.ListBalancesAtRequest(at=_ts(5), page_token=token),
    ):
        with pytest.raises(InvalidArgument, match="different ListBalancesAt query"):
            validation.balances_at(other)
