"""Read-model rows as API messages: exact money strings, timestamps, freshness."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal, localcontext

import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from hypothesis import given
from hypothesis import strategies as st

from ledger.consistency import ConsistencyToken
from ledger.domain.money import INT64_MAX, format_amount
from ledger.v1 import queries_pb2 as pb
from query_server import messages
from query_server.rows import CheckpointRow, Snapshot


@pytest.mark.parametrize(
    ("numeric", "currency", "text"),
    [
        ("12.3", "USD", "12.30"),
        ("12.30", "USD", "12.30"),
        ("0", "USD", "0.00"),
        ("0.00", "EUR", "0.00"),
        ("0.01", "USD", "0.01"),
        ("5", "JPY", "5"),
        ("5.00", "JPY", "5"),
        ("1E+2", "USD", "100.00"),
        ("1.234", "KWD", "1.234"),
        ("1.5", "KWD", "1.500"),
        ("92233720368547758.07", "USD", "92233720368547758.07"),
    ],
)
def test_numeric_is_formatted_with_the_currencys_places(
    numeric: str, currency: str, text: str
) -> None:
    assert messages.money(Decimal(numeric), currency) == text


@pytest.mark.parametrize(
    ("numeric", "currency"), [("0.001", "USD"), ("5.5", "JPY"), ("1.2345", "KWD")]
)
def test_more_places_than_the_currency_has_is_refused_not_rounded(
    numeric: str, currency: str
) -> None:
    with pytest.raises(ValueError, match="decimal places"):
        messages.money(Decimal(numeric), currency)


@pytest.mark.parametrize("numeric", ["NaN", "Infinity"])
def test_non_finite_numeric_is_refused(numeric: str) -> None:
    with pytest.raises(ValueError, match="finite"):
        messages.money(Decimal(numeric), "USD")


@given(st.integers(min_value=0, max_value=INT64_MAX), st.sampled_from(["USD", "JPY", "KWD"]))
def test_formatting_is_exact_whatever_the_decimal_context(minor: int, currency: str) -> None:
    expected = format_amount(minor, currency)
    with localcontext() as context:
        context.prec = 3  # would round any arithmetic on 19-digit amounts
        assert messages.money(Decimal(expected), currency) == expected


@pytest.mark.parametrize(
    "moment",
    [
        datetime(2024, 2, 29, 23, 59, 59, 999_999, tzinfo=UTC),
        datetime(1970, 1, 1, tzinfo=UTC),
        datetime(1969, 12, 31, 23, 59, 59, 500_000, tzinfo=UTC),
        datetime(1, 1, 1, tzinfo=UTC),
        datetime(2024, 6, 1, 12, 0, tzinfo=timezone(timedelta(hours=2))),
    ],
)
def test_timestamps_match_protobufs_own_conversion(moment: datetime) -> None:
    expected = Timestamp()
    expected.FromDatetime(moment)
    assert messages.timestamp(moment) == expected


def test_freshness_names_the_checkpoints_and_when_they_moved() -> None:
    as_of = datetime(2024, 1, 2, 3, 4, 5, tzinfo=UTC)
    freshness = messages.freshness(Snapshot({0: 41, 1: 7}, as_of))
    assert ConsistencyToken.decode(freshness.consistency_token) == ConsistencyToken({0: 41, 1: 7})
    assert freshness.as_of == messages.timestamp(as_of)


def test_freshness_before_anything_was_applied() -> None:
    freshness = messages.freshness(Snapshot({0: -1}, None))
    assert ConsistencyToken.decode(freshness.consistency_token).positions == {}
    assert not freshness.HasField("as_of")


def test_a_shared_freshness_is_not_changed_through_a_response() -> None:
    snapshot = Snapshot({0: 1}, None)
    response = pb.GetAccountResponse(freshness=messages.freshness(snapshot))
    response.freshness.consistency_token = "changed"
    assert messages.freshness(snapshot).consistency_token != "changed"


def test_partition_status_reports_lag_only_when_the_watermark_is_known() -> None:
    moved = datetime(2024, 1, 1, tzinfo=UTC)
    known = messages.partition_status(0, CheckpointRow(0, 9, moved), 12)
    assert (known.checkpoint_offset, known.high_watermark, known.lag) == (9, 12, 2)
    unknown = messages.partition_status(1, CheckpointRow(1, 9, moved), None)
    assert not unknown.HasField("high_watermark")
    assert not unknown.HasField("lag")
    nothing_applied = messages.partition_status(2, None, 3)
    assert (nothing_applied.checkpoint_offset, nothing_applied.lag) == (-1, 3)
    assert not nothing_applied.HasField("updated_at")


def test_a_page_of_balances_at_is_added_as_the_statement_returns_it() -> None:
    opened = datetime(2026, 12, 7, 9, 30, 1, 123456, tzinfo=UTC)
    seconds = int((opened - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    response = pb.ListBalancesAtResponse()
    messages.add_balances_at(
        response.balances,
        [
            ("a-1", "USD", Decimal("12.3"), 4, False, seconds, 123_456_000, True),
            ("a-2", "JPY", Decimal(0), 1, True, -1, 999_999_000, True),
        ],
    )
    first, second = response.balances
    assert (first.account_id, first.currency, first.balance, first.version) == (
        "a-1",
        "USD",
        "12.30",
        4,
    )
    assert first.status == pb.ACCOUNT_STATUS_OPEN
    assert first.opened_at.ToDatetime(tzinfo=UTC) == opened
    assert (second.balance, second.status) == ("0", pb.ACCOUNT_STATUS_CLOSED)
    assert (second.opened_at.seconds, second.opened_at.nanos) == (-1, 999_999_000)
