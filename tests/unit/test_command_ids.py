"""Command ids are UUIDv7s, checked where a command arrives; amounts are fingerprinted canonical."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.command_ids import (
    command_id_millis,
    command_id_time,
    latest_command_id_millis,
    new_command_id,
    new_command_ids,
)
from ledger.domain import commands
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.domain.validation import require_command_id

NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
SKEW = timedelta(seconds=60)


def refusal(command_id: str) -> str:
    with pytest.raises(Rejection) as caught:
        require_command_id(command_id, NOW, SKEW)
    assert caught.value.kind is RejectionKind.INVALID
    return caught.value.message


def at(moment: datetime) -> str:
    return new_command_id(int(moment.timestamp() * 1000))


def test_a_new_id_is_a_canonical_uuid7_stamped_with_its_time() -> None:
    command_id = at(NOW)
    assert uuid.UUID(command_id).version == 7
    assert str(uuid.UUID(command_id)) == command_id
    assert command_id_time(command_id) == NOW
    assert command_id_millis(command_id) == int(NOW.timestamp() * 1000)
    require_command_id(command_id, NOW, SKEW)


def test_ids_made_for_a_batch_are_distinct_canonical_uuid7s_stamped_alike() -> None:
    made = new_command_ids(500, int(NOW.timestamp() * 1000))
    assert len(set(made)) == 500
    for command_id in made:
        parsed = uuid.UUID(command_id)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert str(parsed) == command_id
        assert command_id_time(command_id) == NOW
    # The 74 random bits vary in both their parts (rand_a, rand_b).
    assert len({uuid.UUID(c).int >> 64 & 0xFFF for c in made}) > 100
    assert len({uuid.UUID(c).int & (2**62 - 1) for c in made}) == 500


@pytest.mark.parametrize(
    "command_id",
    [
        "cmd-1",
        str(uuid.uuid4()),
        str(uuid.uuid1()),
        "{" + new_command_id() + "}",
        new_command_id().upper(),
        new_command_id().replace("-", ""),
        new_command_id() + " ",
        "c" * 200,
    ],
)
def test_anything_but_a_canonical_uuid7_is_invalid_and_says_how_to_make_one(
    command_id: str,
) -> None:
    message = refusal(command_id)
    assert "is not a UUIDv7 in canonical form" in message
    assert "ledger.command_ids.new_command_id()" in message
    assert len(message) < 400


def test_the_latest_time_among_ids_ignores_those_that_are_not_uuid7() -> None:
    times = [1_700_000_000_000 + n * 997 for n in (5, 1, 9, 3)]
    ids = [new_command_id(t) for t in times]
    assert latest_command_id_millis(ids) == max(times)
    # Ids from before UUIDv7s were required sort after them, yet count for nothing.
    old = ["open-acc-1", "zz-last", new_command_id(max(times) + 1).upper()]
    assert latest_command_id_millis(ids + old) == max(times)
    assert latest_command_id_millis(old) is None
    assert latest_command_id_millis([]) is None


def test_a_missing_id_is_invalid() -> None:
    assert refusal("").startswith("command_id is required")


def test_an_id_from_beyond_the_allowed_skew_is_invalid_and_blames_the_clock() -> None:
    require_command_id(at(NOW + SKEW), NOW, SKEW)
    message = refusal(at(NOW + SKEW + timedelta(milliseconds=1)))
    assert "check the client's clock" in message


def test_an_old_id_passes_the_edge_the_writer_decides_whether_it_is_too_old() -> None:
    require_command_id(at(NOW - timedelta(days=400)), NOW, SKEW)


@pytest.mark.parametrize(
    ("written", "canonical"),
    [
        ("7.5", "7.5"),
        ("7.50", "7.5"),
        ("007.5", "7.5"),
        ("7.0", "7"),
        ("7.", "7."),
        ("0.05", "0.05"),
        ("000.050", "0.05"),
        ("100", "100"),
        ("0", "0"),
        ("-7.50", "-7.50"),
        ("seven", "seven"),
    ],
)
def test_canonical_amounts_drop_leading_and_trailing_zeros_only(
    written: str, canonical: str
) -> None:
    assert commands.canonical_amount(written) == canonical


def test_one_amount_written_differently_is_one_command() -> None:
    command_id = new_command_id()
    forms = [commands.Deposit(command_id, "a1", text) for text in ("7.5", "7.50", "007.5")]
    assert len({commands.fingerprint(form) for form in forms}) == 1
    transfers = [commands.Transfer(command_id, "a1", "a2", text) for text in ("3", "3.00")]
    assert len({commands.fingerprint(form) for form in transfers}) == 1


def test_the_literal_fingerprint_is_the_canonical_one_for_a_canonical_amount() -> None:
    # What events recorded before amounts were canonical: a canonical amount matches either way.
    canonical = commands.Withdraw(new_command_id(), "a1", "7.5")
    assert commands.literal_fingerprint(canonical) == commands.fingerprint(canonical)
    padded = commands.Withdraw(canonical.command_id, "a1", "7.50")
    assert commands.literal_fingerprint(padded) != commands.fingerprint(padded)


def test_an_id_from_after_the_year_9999_is_refused_like_any_from_the_future() -> None:
    message = refusal("ffffffff-ffff-7fff-bfff-ffffffffffff")
    assert "was made after the year 9999, more than 60 s after the server's clock" in message


@given(
    st.integers(0, 253_402_300_799_999),  # up to the end of 9999 (a datetime's last year)
    st.datetimes(min_value=datetime(1971, 1, 1), max_value=datetime(9000, 1, 1)),
    st.sampled_from([timedelta(0), SKEW, timedelta(microseconds=1500), timedelta(days=1)]),
    st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
)
def test_an_id_is_refused_exactly_when_it_was_made_more_than_the_skew_after_now(
    millis: int, naive_now: datetime, skew: timedelta, zone: timezone
) -> None:
    now = naive_now.replace(tzinfo=zone)
    command_id = new_command_id(millis)
    made = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=millis)
    try:
        require_command_id(command_id, now, skew)
    except Rejection:
        assert made - now > skew
    else:
        assert made - now <= skew


def test_the_edge_of_the_skew_is_exact_to_the_microsecond() -> None:
    made = at(NOW + SKEW + timedelta(milliseconds=1))
    require_command_id(made, NOW + timedelta(microseconds=1000), SKEW)
    with pytest.raises(Rejection):
        require_command_id(made, NOW + timedelta(microseconds=999), SKEW)
