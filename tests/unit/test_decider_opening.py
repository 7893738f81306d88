"""OpenAccount: given some accounts, when a command
arrives, then these events, or this rejection."""

from __future__ import annotations

import pytest

from ledger.domain import commands
from ledger.domain.account import Account, AccountStatus
from ledger.domain.decider import decide, replay
from ledger.domain.rejection import RejectionKind
from ledger.events import records
from tests.unit.decider_givens import NOW, closed, given, opened, rejected

# --- OpenAccount ---


def test_open_account_records_the_account_at_version_1() -> None:
    command = commands.OpenAccount("c1", "acc-1", "EUR", "Ada Lovelace")

    events = decide(command, {}, NOW)

    assert events == [
        records.AccountOpened(
            event_id=records.event_id_for("acc-1", 1),
            account_id="acc-1",
            version=1,
            command_id="c1",
            command_fingerprint=commands.fingerprint(command),
            occurred_at=NOW,
            balance_after=0,
            currency="EUR",
            owner="Ada Lovelace",
        )
    ]
    assert replay(events)["acc-1"] == Account(
        account_id="acc-1",
        currency="EUR",
        owner="Ada Lovelace",
        status=AccountStatus.OPEN,
        balance=0,
        version=1,
        opened_at=NOW,
        updated_at=NOW,
    )


def test_open_account_accepts_every_allowed_id_character_and_an_empty_owner() -> None:
    account_id = "Az09._:-" + "x" * 56
    assert len(account_id) == 64
    [event] = decide(commands.OpenAccount("c1", account_id, "JPY", ""), {}, NOW)
    assert event.account_id == account_id


def test_opening_an_existing_account_is_already_exists() -> None:
    rejection = rejected(opened("a1"), given(opened("a1")))
    assert rejection.kind is RejectionKind.ALREADY_EXISTS
    assert rejection.message == "account 'a1' already exists"


def test_opening_a_closed_account_again_is_already_exists() -> None:
    rejection = rejected(commands.OpenAccount("again", "a1", "USD", "x"), given(*closed("a1")))
    assert rejection.kind is RejectionKind.ALREADY_EXISTS
    assert "account 'a1' already exists (closed; account ids are never reused)" in rejection.message


@pytest.mark.parametrize("account_id", ["", "a b", "a/b", "ä", "x" * 65, "a\n", "a*"])
def test_open_account_with_a_malformed_id_is_invalid(account_id: str) -> None:
    rejection = rejected(commands.OpenAccount("c1", account_id, "USD", "x"), {})
    assert rejection.kind is RejectionKind.INVALID
    assert f"account_id {account_id!r} is not a valid account id" in rejection.message


def test_open_account_in_an_unknown_currency_is_invalid() -> None:
    rejection = rejected(commands.OpenAccount("c1", "a1", "ZZZ", "x"), {})
    assert rejection.kind is RejectionKind.INVALID
    assert "unknown currency 'ZZZ'" in rejection.message


def test_open_account_with_a_too_long_owner_is_invalid() -> None:
    decide(commands.OpenAccount("c1", "a1", "USD", "o" * 200), {}, NOW)
    rejection = rejected(commands.OpenAccount("c1", "a1", "USD", "o" * 201), {})
    assert rejection.kind is RejectionKind.INVALID
    assert rejection.message == "owner is too long: 201 characters, at most 200"
