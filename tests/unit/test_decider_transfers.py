"""Transfer: given some accounts, when a command arrives, then these events, or this rejection."""

from __future__ import annotations

import pytest

from ledger.domain.commands import (
    Command,
    Transfer,
    fingerprint,
)
from ledger.domain.decider import decide, replay
from ledger.domain.rejection import RejectionKind
from ledger.events.records import (
    TransferCredited,
    TransferDebited,
)
from tests.unit.decider_givens import NOW, closed, funded, given, opened, rejected
from tests.unit.event_envelopes import envelope

# --- Transfer ---


def test_transfer_debits_the_source_and_credits_the_destination() -> None:
    accounts = given(*funded("src", "10.00"), opened("dst"))
    command = Transfer("t1", "src", "dst", "4.00", expected_version=2)

    events = decide(command, accounts, NOW)

    assert events == [
        TransferDebited(
            **envelope("src", 3, NOW, command_id="t1", fingerprint=fingerprint(command)),
            balance_after=600,
            amount=400,
            transfer_id="t1",
            counterparty_id="dst",
        ),
        TransferCredited(
            **envelope("dst", 2, NOW, command_id="t1", fingerprint=fingerprint(command)),
            balance_after=400,
            amount=400,
            transfer_id="t1",
            counterparty_id="src",
        ),
    ]
    after = replay(events, accounts)
    assert (after["src"].balance, after["dst"].balance) == (600, 400)


def test_transfer_to_the_same_account_is_invalid() -> None:
    rejection = rejected(Transfer("t1", "a1", "a1", "1.00"), given(*funded("a1", "5")))
    assert rejection.kind is RejectionKind.INVALID
    assert rejection.message == "cannot transfer from account 'a1' to itself"


@pytest.mark.parametrize(
    ("command", "field"),
    [
        (Transfer("t1", "bad id", "a2", "1.00"), "from_account_id"),
        (Transfer("t1", "a1", "bad id", "1.00"), "to_account_id"),
    ],
)
def test_transfer_with_a_malformed_account_id_names_the_field(command: Command, field: str) -> None:
    rejection = rejected(command, {})
    assert rejection.kind is RejectionKind.INVALID
    assert rejection.message.startswith(f"{field} 'bad id' is not a valid account id")


@pytest.mark.parametrize(
    ("command", "missing"),
    [
        (Transfer("t1", "ghost", "a1", "1.00"), "ghost"),
        (Transfer("t1", "a1", "ghost", "1.00"), "ghost"),
    ],
)
def test_transfer_with_an_unknown_account_is_not_found(command: Command, missing: str) -> None:
    rejection = rejected(command, given(*funded("a1", "5.00")))
    assert rejection.kind is RejectionKind.NOT_FOUND
    assert rejection.message == f"account {missing!r} does not exist"


def test_transfer_between_currencies_is_a_failed_precondition() -> None:
    accounts = given(*funded("usd", "5.00"), opened("eur", "EUR"))
    rejection = rejected(Transfer("t1", "usd", "eur", "1.00"), accounts)
    assert rejection.kind is RejectionKind.PRECONDITION
    assert (
        rejection.message
        == "currency mismatch: account 'usd' holds USD but account 'eur' holds EUR"
    )


def test_transfer_of_more_than_the_source_holds_is_insufficient_funds() -> None:
    accounts = given(*funded("a1", "5.00"), opened("a2"))
    rejection = rejected(Transfer("t1", "a1", "a2", "5.01"), accounts)
    assert rejection.kind is RejectionKind.PRECONDITION
    assert (
        rejection.message == "insufficient funds: account 'a1' balance 5.00 USD, transfer 5.01 USD"
    )


def test_transfer_from_a_closed_account_is_a_failed_precondition() -> None:
    rejection = rejected(Transfer("t1", "a1", "a2", "1"), given(*closed("a1"), opened("a2")))
    assert rejection.kind is RejectionKind.PRECONDITION
    assert rejection.message == "cannot transfer from account 'a1': it is closed"


def test_transfer_to_a_closed_account_is_a_failed_precondition() -> None:
    rejection = rejected(Transfer("t1", "a1", "a2", "1"), given(*funded("a1", "5"), *closed("a2")))
    assert rejection.kind is RejectionKind.PRECONDITION
    assert rejection.message == "cannot transfer to account 'a2': it is closed"


def test_transfer_expected_version_is_the_source_version() -> None:
    accounts = given(*funded("a1", "5.00"), opened("a2"))
    assert decide(Transfer("t1", "a1", "a2", "1.00", expected_version=2), accounts, NOW)
    rejection = rejected(Transfer("t1", "a1", "a2", "1.00", expected_version=1), accounts)
    assert rejection.kind is RejectionKind.VERSION_CONFLICT
    assert "account 'a1' is at version 2" in rejection.message


def test_transfer_that_would_overflow_the_destination_is_a_failed_precondition() -> None:
    accounts = given(*funded("a1", "1", "JPY"), *funded("a2", "9223372036854775807", "JPY"))
    rejection = rejected(Transfer("t1", "a1", "a2", "1"), accounts)
    assert rejection.kind is RejectionKind.PRECONDITION
    assert "account 'a2' cannot hold more than" in rejection.message
