"""The snapshot chunks written directly against fastavro's bytes, which is what encoding did
before and still does for anything the direct writer leaves to it (FORMAT stays 4)."""

from __future__ import annotations

from array import array
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from functools import partial

from hypothesis import given, settings
from hypothesis import strategies as st

from command_server.outcome_log import FINGERPRINT_BYTES, OutcomeColumns
from command_server.snapshot_format import (
    MAGIC,
    AccountChunk,
    Body,
    Memory,
    OutcomeChunk,
    by_fastavro,
    decode,
    encode,
)
from command_server.snapshot_writer import GrowingChunks, KnownAccounts
from ledger.domain.account import Account, AccountStatus

LONGS = st.integers(-(2**63), 2**63 - 1)
# Short ASCII (the fast path), long and non-ASCII strings (one at a time).
TEXTS = st.text(max_size=3) | st.text(max_size=90) | st.uuids().map(str)
OFFSETS = st.timedeltas(-timedelta(hours=23), timedelta(hours=23))
AWARE = st.datetimes(timezones=st.just(UTC) | OFFSETS.map(timezone))
MOMENTS = AWARE | st.datetimes(min_value=datetime(1971, 1, 2), max_value=datetime(2999, 1, 1))


def outcome(body: Callable[[], bytes]) -> bytes | type[BaseException]:
    """What encoding gives: the bytes, or the kind of exception it raises."""
    try:
        return body()
    except Exception as exc:
        return type(exc)


def assert_written_as_fastavro_writes(body: Body) -> None:
    written = outcome(lambda: encode(body))
    expected = outcome(lambda: by_fastavro(body))
    if isinstance(written, bytes):
        assert written[len(MAGIC) + 16 :] == expected
    else:
        assert written == expected


@st.composite
def outcome_columns(draw: st.DrawFn) -> OutcomeColumns:
    count = draw(st.integers(0, 12))
    return OutcomeColumns(
        draw(st.integers(0, 2**63 - 1)),
        draw(st.lists(TEXTS, min_size=count, max_size=count)),
        draw(st.binary(min_size=count * FINGERPRINT_BYTES, max_size=count * FINGERPRINT_BYTES)),
        array("q", draw(st.lists(LONGS, min_size=count, max_size=count))),
        array("q", draw(st.lists(LONGS, min_size=count, max_size=count))),
        draw(st.lists(TEXTS, min_size=count, max_size=count)),
    )


@settings(max_examples=300)
@given(lineage=TEXTS, columns=outcome_columns())
def test_an_outcome_chunk_is_written_as_fastavro_writes_it(
    lineage: str, columns: OutcomeColumns
) -> None:
    body = OutcomeChunk(lineage, columns)
    assert_written_as_fastavro_writes(body)
    assert decode(encode(body)) == body


accounts = st.builds(
    Account,
    TEXTS,
    TEXTS,
    TEXTS,
    st.sampled_from(AccountStatus),
    LONGS | st.integers(2**63, 2**64),
    LONGS,
    MOMENTS,
    MOMENTS,
)


@settings(max_examples=300)
@given(generation=TEXTS, chunk=st.lists(accounts, max_size=8))
def test_an_account_chunk_is_written_as_fastavro_writes_it(
    generation: str, chunk: list[Account]
) -> None:
    # Out of 64 bits, a naive datetime (fastavro takes it as local time): fastavro decides.
    assert_written_as_fastavro_writes(AccountChunk(generation, chunk))


def test_what_fastavro_refuses_is_still_refused() -> None:
    now = datetime.now(UTC)
    surrogate = Account("\ud800", "EUR", "", AccountStatus.OPEN, 1, 1, now, now)
    too_large = Account("a", "EUR", "", AccountStatus.OPEN, 2**63, 1, now, now)
    assert outcome(lambda: encode(AccountChunk("g", [surrogate]))) is UnicodeEncodeError
    assert outcome(lambda: encode(AccountChunk("g", [too_large]))) is OverflowError
    ids = ["ok", "\udcff"]
    columns = OutcomeColumns(0, ids, bytes(64), array("q", [1, 2]), array("q", [1, 2]), ids)
    assert outcome(lambda: encode(OutcomeChunk("l", columns))) is UnicodeEncodeError


# A chunk growing from one snapshot to the next: same entries first, then more; now and then
# an earlier answer changed (a refund's new token), another chunk, or a shorter one.
steps = st.lists(
    st.tuples(st.integers(0, 40), st.none() | st.integers(0, 39), st.sampled_from([0, 0, 0, 16])),
    min_size=1,
    max_size=8,
)


@settings(max_examples=200)
@given(ids=st.lists(TEXTS, min_size=40, max_size=40), steps=steps)
def test_a_growing_chunk_is_written_as_without_memory(
    ids: list[str], steps: list[tuple[int, int | None, int]]
) -> None:
    growing = GrowingChunks()
    tokens = [f"v1.{n}" for n in range(40)]
    for length, changed, first in steps:
        if changed is not None:
            tokens[changed] += "x"
        columns = OutcomeColumns(
            first,
            ids[:length],
            bytes(length * FINGERPRINT_BYTES),
            array("q", range(length)),
            array("q", range(length)),
            tokens[:length],
        )
        body = OutcomeChunk("lineage", columns)
        assert encode(body, Memory(growing, None)) == encode(body)


# Versions of a few accounts, one snapshot after another: the same account again (its currency
# and opening time the same objects), or one whose opening time is another object, even another
# moment, or whose currency changed; more accounts than the memory keeps.
versions = st.lists(
    st.tuples(st.integers(0, 5), LONGS, st.sampled_from(["same", "equal", "later", "currency"])),
    max_size=30,
)


@settings(max_examples=200)
@given(start=st.lists(accounts, min_size=6, max_size=6), changes=versions, limit=st.integers(0, 8))
def test_known_accounts_are_written_as_without_memory(
    start: list[Account], changes: list[tuple[int, int, str]], limit: int
) -> None:
    known = KnownAccounts(limit)
    current = list(start)
    for at, balance, how in changes:
        account = current[at]
        opened_at, currency = account.opened_at, account.currency
        if how == "equal":
            opened_at = opened_at.replace()
        elif how == "later":
            opened_at = opened_at.replace(microsecond=(opened_at.microsecond + 1000) % 10**6)
        elif how == "currency":
            currency = currency + "X"
        current[at] = Account(
            account.account_id,
            currency,
            "",
            account.status,
            balance,
            account.version + 1,
            opened_at,
            account.updated_at,
        )
        body = AccountChunk("generation", current[: at + 1])
        remembered = outcome(partial(encode, body, Memory(None, known)))
        assert remembered == outcome(partial(encode, body))
