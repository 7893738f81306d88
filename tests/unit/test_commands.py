from __future__ import annotations

import json
from hashlib import sha256

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ledger.domain import commands


def test_fingerprint_is_a_stable_sha256_of_the_canonical_payload() -> None:
    # Stored in events: a change here breaks idempotent retries across a deploy.
    canonical = '{"account_id":"a1","amount":"12.34","expected_version":null,"type":"deposit"}'
    assert (
        commands.fingerprint(commands.Deposit("c1", "a1", "12.34"))
        == sha256(canonical.encode()).hexdigest()
    )
    assert commands.fingerprint(commands.Deposit("c1", "a1", "12.34")) == (
        "5c46e2adc556d74340593012da211df16b051149196e8f0a5421471eca4bdcf9"
    )


def test_fingerprint_ignores_the_command_id() -> None:
    assert commands.fingerprint(commands.Deposit("c1", "a1", "1.00")) == commands.fingerprint(
        commands.Deposit("c2", "a1", "1.00")
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (commands.Deposit("c1", "a1", "1.00"), commands.Deposit("c1", "a1", "1.01")),
        (commands.Deposit("c1", "a1", "1.00"), commands.Deposit("c1", "a2", "1.00")),
        (
            commands.Deposit("c1", "a1", "1.00"),
            commands.Deposit("c1", "a1", "1.00", expected_version=3),
        ),
        (commands.Deposit("c1", "a1", "1.00"), commands.Withdraw("c1", "a1", "1.00")),
        (commands.Transfer("c1", "a1", "a2", "1.00"), commands.Transfer("c1", "a2", "a1", "1.00")),
        (
            commands.OpenAccount("c1", "a1", "USD", "x"),
            commands.OpenAccount("c1", "a1", "EUR", "x"),
        ),
        (commands.CloseAccount("c1", "a1"), commands.CloseAccount("c1", "a1", expected_version=2)),
        (commands.CloseAccount("c1", "a1"), commands.EraseOwner("c1", "a1")),
        (commands.EraseOwner("c1", "a1"), commands.EraseOwner("c1", "a2")),
    ],
)
def test_a_different_payload_has_a_different_fingerprint(
    first: commands.Command, second: commands.Command
) -> None:
    assert commands.fingerprint(first) != commands.fingerprint(second)


def test_the_fingerprint_holds_no_trace_of_the_owner() -> None:
    # A hash of a guessable name is the name: the log keeps fingerprints forever.
    ada = commands.OpenAccount("c1", "a1", "USD", "Ada Lovelace")
    assert commands.fingerprint(ada) == commands.fingerprint(
        commands.OpenAccount("c1", "a1", "USD", "")
    )
    canonical = '{"account_id":"a1","currency":"USD","type":"open_account"}'
    assert commands.fingerprint(ada) == sha256(canonical.encode()).hexdigest()


def test_the_literal_fingerprint_still_matches_events_recorded_with_the_owner() -> None:
    ada = commands.OpenAccount("c1", "a1", "USD", "Ada Lovelace")
    recorded = '{"account_id":"a1","currency":"USD","owner":"Ada Lovelace","type":"open_account"}'
    assert commands.literal_fingerprint(ada) == sha256(recorded.encode()).hexdigest()
    other = commands.OpenAccount("c1", "a1", "USD", "Grace Hopper")
    assert commands.literal_fingerprint(other) != commands.literal_fingerprint(ada)


@pytest.mark.parametrize(
    ("command", "accounts"),
    [
        (commands.OpenAccount("c", "a1", "USD", "x"), ("a1",)),
        (commands.Deposit("c", "a1", "1"), ("a1",)),
        (commands.Withdraw("c", "a1", "1"), ("a1",)),
        (commands.CloseAccount("c", "a1"), ("a1",)),
        (commands.EraseOwner("c", "a1"), ("a1",)),
        (commands.Transfer("c", "a1", "a2", "1"), ("a1", "a2")),
        (commands.Transfer("c", "a1", "a1", "1"), ("a1",)),
    ],
)
def test_accounts_of_names_each_touched_account_once(
    command: commands.Command, accounts: tuple[str, ...]
) -> None:
    assert commands.accounts_of(command) == accounts


@given(
    st.dictionaries(
        st.text(max_size=12),
        st.none() | st.integers() | st.text(max_size=40) | st.booleans() | st.floats(),
        max_size=8,
    )
)
def test_the_canonical_payload_is_what_json_dumps_writes(payload: dict[str, object]) -> None:
    # Fingerprints are stored in events: their text must stay exactly json.dumps' for any
    # payload, including values the commands never hold (left to the encoder).
    expected = json.dumps(payload, sort_keys=True, separators=(",", ":"))
    assert commands._canonical(payload) == expected  # type: ignore[arg-type]
