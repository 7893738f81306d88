from __future__ import annotations

from hashlib import sha256

import pytest

from ledger.domain.commands import (
    CloseAccount,
    Command,
    Deposit,
    OpenAccount,
    Transfer,
    Withdraw,
    accounts_of,
    fingerprint,
)


def test_fingerprint_is_a_stable_sha256_of_the_canonical_payload() -> None:
    # Stored in events: a change here breaks idempotent retries across a deploy.
    canonical = '{"account_id":"a1","amount":"12.34","expected_version":null,"type":"deposit"}'
    assert fingerprint(Deposit("c1", "a1", "12.34")) == sha256(canonical.encode()).hexdigest()
    assert fingerprint(Deposit("c1", "a1", "12.34")) == (
        "5c46e2adc556d74340593012da211df16b051149196e8f0a5421471eca4bdcf9"
    )


def test_fingerprint_ignores_the_command_id() -> None:
    assert fingerprint(Deposit("c1", "a1", "1.00")) == fingerprint(Deposit("c2", "a1", "1.00"))


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (Deposit("c1", "a1", "1.00"), Deposit("c1", "a1", "1.01")),
        (Deposit("c1", "a1", "1.00"), Deposit("c1", "a2", "1.00")),
        (Deposit("c1", "a1", "1.00"), Deposit("c1", "a1", "1.00", expected_version=3)),
        (Deposit("c1", "a1", "1.00"), Withdraw("c1", "a1", "1.00")),
        (Transfer("c1", "a1", "a2", "1.00"), Transfer("c1", "a2", "a1", "1.00")),
        (OpenAccount("c1", "a1", "USD", "x"), OpenAccount("c1", "a1", "EUR", "x")),
        (OpenAccount("c1", "a1", "USD", "x"), OpenAccount("c1", "a1", "USD", "y")),
        (CloseAccount("c1", "a1"), CloseAccount("c1", "a1", expected_version=2)),
    ],
)
def test_a_different_payload_has_a_different_fingerprint(first: Command, second: Command) -> None:
    assert fingerprint(first) != fingerprint(second)


@pytest.mark.parametrize(
    ("command", "accounts"),
    [
        (OpenAccount("c", "a1", "USD", "x"), ("a1",)),
        (Deposit("c", "a1", "1"), ("a1",)),
        (Withdraw("c", "a1", "1"), ("a1",)),
        (CloseAccount("c", "a1"), ("a1",)),
        (Transfer("c", "a1", "a2", "1"), ("a1", "a2")),
        (Transfer("c", "a1", "a1", "1"), ("a1",)),
    ],
)
def test_accounts_of_names_each_touched_account_once(
    command: Command, accounts: tuple[str, ...]
) -> None:
    assert accounts_of(command) == accounts
