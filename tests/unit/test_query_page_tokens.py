"""Page tokens: opaque, validated, and bound to the listing and filters they were issued for."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain.validation import ACCOUNT_ID_PATTERN
from query_server.errors import InvalidArgument
from query_server.page_tokens import ACCOUNTS, DAILY_SUMMARIES, TRANSACTIONS, PageTokens

FILTERS = {"status": "OPEN", "currency": None}


def _raw(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).decode().rstrip("=")


@given(st.from_regex(ACCOUNT_ID_PATTERN, fullmatch=True), st.integers(0, 2**63 - 1))
def test_a_token_resumes_after_the_key_it_was_issued_with(account_id: str, day: int) -> None:
    token = DAILY_SUMMARIES.encode(FILTERS, (day, account_id))
    assert DAILY_SUMMARIES.decode(token, FILTERS) == (day, account_id)


def test_tokens_are_url_safe_and_unpadded() -> None:
    token = ACCOUNTS.encode(FILTERS, ("acc-1",))
    assert token.replace("-", "").replace("_", "").isalnum()


@pytest.mark.parametrize(
    "other",
    [
        {"status": "CLOSED", "currency": None},
        {"status": "OPEN", "currency": "USD"},
        {"status": "OPEN"},
    ],
)
def test_a_token_used_with_other_filters_is_invalid(other: dict[str, str | None]) -> None:
    token = ACCOUNTS.encode(FILTERS, ("acc-1",))
    with pytest.raises(InvalidArgument, match="different ListAccounts query"):
        ACCOUNTS.decode(token, other)


def test_a_token_of_another_listing_is_invalid() -> None:
    same_key_shape = PageTokens("ListSomethingElse", (str,))
    token = same_key_shape.encode(FILTERS, ("acc-1",))
    with pytest.raises(InvalidArgument):
        ACCOUNTS.decode(token, FILTERS)


@pytest.mark.parametrize(
    "token",
    [
        "garbage!",
        "x",
        "====",
        base64.urlsafe_b64encode(b"\xff\xfe").decode(),
        _raw([1, 2, 3]),
        _raw({"v": 2, "f": "x", "k": [1]}),
        "A" * 10_000,
    ],
)
def test_garbage_is_invalid(token: str) -> None:
    with pytest.raises(InvalidArgument, match="page_token"):
        TRANSACTIONS.decode(token, FILTERS)


@pytest.mark.parametrize("key", [["7"], [7, 8], [], [True], [1.5], None, "7"])
def test_a_key_of_the_wrong_shape_is_invalid(key: object) -> None:
    genuine = json.loads(base64.urlsafe_b64decode(TRANSACTIONS.encode(FILTERS, (7,)) + "=="))
    forged = _raw({**genuine, "k": key})
    with pytest.raises(InvalidArgument, match="unexpected position"):
        TRANSACTIONS.decode(forged, FILTERS)
