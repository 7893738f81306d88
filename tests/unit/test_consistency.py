from __future__ import annotations

import base64

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ledger.consistency import ConsistencyToken, encode_positions

positions = st.dictionaries(
    st.integers(min_value=0, max_value=2**31 - 1),
    st.integers(min_value=0, max_value=2**63 - 1),
    max_size=20,
)


@settings(max_examples=200)
@given(positions)
def test_encoding_positions_directly_gives_the_tokens_text(positions: dict[int, int]) -> None:
    # In whatever order the dict holds them: the writer's outcomes add partitions as they come.
    backwards = dict(reversed(list(positions.items())))
    assert encode_positions(backwards) == ConsistencyToken(positions).encode()
    # The spelling before it was taken apart for speed: sorted, joined, base64url, unpadded.
    compact = ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))
    spelled = base64.urlsafe_b64encode(compact.encode()).decode().rstrip("=")
    assert encode_positions(backwards) == "v1." + spelled


@settings(max_examples=200)
@given(positions)
def test_decode_inverts_encode(positions: dict[int, int]) -> None:
    token = ConsistencyToken(positions)
    assert ConsistencyToken.decode(token.encode()) == token


def test_token_is_url_safe_and_opaque() -> None:
    encoded = ConsistencyToken({0: 17, 11: 4_000_000_000}).encode()
    assert encoded.startswith("v1.")
    assert set(encoded[3:]) <= set(
        "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"
    )


def test_token_ignores_later_changes_to_the_callers_dict() -> None:
    positions = {0: 5}
    token = ConsistencyToken(positions)
    positions[0] = 99
    assert token.positions == {0: 5}


def test_equal_tokens_hash_alike_whatever_the_insertion_order() -> None:
    assert hash(ConsistencyToken({0: 1, 2: 3})) == hash(ConsistencyToken({2: 3, 0: 1}))
    assert ConsistencyToken({0: 1, 2: 3}).encode() == ConsistencyToken({2: 3, 0: 1}).encode()


def _b64(text: str) -> str:
    return base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "expected the 'v1.' prefix"),
        ("garbage", "expected the 'v1.' prefix"),
        ("v2." + _b64("0:1"), "expected the 'v1.' prefix"),
        ("v1.***", "not base64url"),
        ("v1.MDox=", "not base64url"),
        ("v1.A", "undecodable body"),
        ("v1." + _b64("zero:one"), "not a partition:offset list"),
        ("v1." + _b64("0:-1"), "not a partition:offset list"),
        ("v1." + _b64("0:1,"), "not a partition:offset list"),
        ("v1." + _b64("0:1;1:2"), "not a partition:offset list"),
        ("v1." + base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("="), "undecodable body"),
        ("v1." + _b64("0:1,0:2"), "a partition appears twice"),
        ("v1." + _b64("9999999999:1"), "out of Kafka's range"),
        ("v1." + "A" * 5000, "too long"),
    ],
)
def test_decode_rejects_garbage_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        ConsistencyToken.decode(text)


@settings(max_examples=300)
@given(st.text(max_size=60) | st.text(max_size=60).map(lambda text: "v1." + text))
def test_decode_of_any_text_is_a_token_or_a_value_error(text: str) -> None:
    try:
        token = ConsistencyToken.decode(text)
    except ValueError:
        return
    assert ConsistencyToken.decode(token.encode()) == token


def test_positions_must_be_kafka_positions() -> None:
    with pytest.raises(ValueError, match="out of Kafka's range"):
        ConsistencyToken({0: -1})


def test_covered_by_needs_every_partition_at_or_past_the_token() -> None:
    token = ConsistencyToken({0: 10, 3: 7})
    assert token.covered_by({0: 10, 3: 7})
    assert token.covered_by({0: 11, 1: 0, 3: 100})
    assert not token.covered_by({0: 9, 3: 7})
    assert not token.covered_by({0: 10})
    assert ConsistencyToken({}).covered_by({})


def test_merge_and_union_keep_the_latest_offset_per_partition() -> None:
    first = ConsistencyToken({0: 10, 1: 3})
    second = ConsistencyToken({1: 8, 2: 1})
    assert first.merge(second) == ConsistencyToken({0: 10, 1: 8, 2: 1})
    assert ConsistencyToken.union([first, second, ConsistencyToken.at(0, 4)]) == ConsistencyToken(
        {0: 10, 1: 8, 2: 1}
    )
    assert ConsistencyToken.union([]) == ConsistencyToken({})


def test_the_empty_token_round_trips_and_is_always_covered() -> None:
    empty = ConsistencyToken({})
    assert ConsistencyToken.decode(empty.encode()) == empty
    assert empty.covered_by({})
