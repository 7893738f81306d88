"""Given some accounts (built by accepted commands), when a command arrives, then these events, or
this rejection."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from ledger.domain.account import Account, AccountStatus
from ledger.domain.commands import (
    CloseAccount,
    Command,
    Deposit,
    OpenAccount,
    Transfer,
    Withdraw,
    fingerprint,
)
from ledger.domain.decider import decide, replay
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.events.records import (
    AccountClosed,
    AccountOpened,
    MoneyDeposited,
    MoneyWithdrawn,
    TransferCredited,
    TransferDebited,
    event_id_for,
)

NOW = datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)


def given(*commands: Command) -> dict[str, Account]:
    """The accounts after `commands`, each of which must be accepted."""
    accounts: dict[str, Account] = {}
    for command in commands:
        accounts = replay(decide(command, accounts, NOW), accounts)
    return accounts


def rejected(command: Command, accounts: dict[str, Account]) -> Rejection:
    with pytest.raises(Rejection) as caught:
        decide(command, accounts, NOW)
    return caught.value


def opened(account_id: str, currency: str = "USD") -> OpenAccount:
    return OpenAccount(f"open-{account_id}", account_id, currency, f"owner of {account_id}")


def funded(account_id: str, amount: str, currency: str = "USD") -> tuple[Command, ...]:
    return opened(account_id, currency), Deposit(f"fund-{account_id}", account_id, amount)


def closed(account_id: str) -> tuple[Command, ...]:
    return opened(account_id), CloseAccount(f"close-{account_id}", account_id)


# --- OpenAccount ---


def test_open_account_records_the_account_at_version_1() -> None:
    command = OpenAccount("c1", "acc-1", "EUR", "Ada Lovelace")

    events = decide(command, {}, NOW)

    assert events == [
        AccountOpened(
            event_id=event_id_for("acc-1", 1),
            account_id="acc-1",
            version=1,
            command_id="c1",
            command_fingerprint=fingerprint(command),
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
    [event] = decide(OpenAccount("c1", account_id, "JPY", ""), {}, NOW)
    assert event.account_id == account_id


def test_opening_an_existing_account_is_already_exists() -> None:
    rejection = rejected(opened("a1"), given(opened("a1")))
    assert rejection.kind is RejectionKind.ALREADY_EXISTS
    assert rejection.message == "account 'a1' already exists"


def test_opening_a_closed_account_again_is_already_exists() -> None:
    rejection = rejected(OpenAccount("again", "a1", "USD", "x"), given(*closed("a1")))
    assert rejection.kind is RejectionKind.ALREADY_EXISTS
    assert "account 'a1' already exists (closed; account ids are never reused)" in rejection.message


@pytest.mark.parametrize("account_id", ["", "a b", "a/b", "ä", "x" * 65, "a\n", "a*"])
def test_open_account_with_a_malformed_id_is_invalid(account_id: str) -> None:
    rejection = rejected(OpenAccount("c1", account_id, "USD", "x"), {})
    assert rejection.kind is RejectionKind.INVALID
    assert f"account_id {account_id!r} is not a valid account id" in rejection.message


def test_open_account_in_an_unknown_currency_is_invalid() -> None:
    rejection = rejected(OpenAccount("c1", "a1", "ZZZ", "x"), {})
    assert rejection.kind is RejectionKind.INVALID
    assert "unknown currency 'ZZZ'" in rejection.message


def test_open_account_with_a_too_long_owner_is_invalid() -> None:
    decide(OpenAccount("c1", "a1", "USD", "o" * 200), {}, NOW)
    rejection = rejected(OpenAccount("c1", "a1", "USD", "o" * 201), {})
    assert rejection.kind is RejectionKind.INVALID
    assert rejection.message == "owner is too long: 201 characters, at most 200"


# --- command ids (common to every command) ---


@pytest.mark.parametrize(
    "command",
    [
        OpenAccount("", "a1", "USD", "x"),
        Deposit("", "a1", "1.00"),
        Withdraw("", "a1", "1.00"),
        Transfer("", "a1", "a2", "1.00"),
        CloseAccount("", "a1"),
    ],
)
def test_a_command_without_command_id_is_invalid(command: Command) -> None:
    rejection = rejected(command, given(opened("a1"), opened("a2")))
    assert rejection.kind is RejectionKind.INVALID
    assert "command_id is required" in rejection.message


def test_a_command_id_longer_than_128_characters_is_invalid() -> None:
    decide(OpenAccount("c" * 128, "a1", "USD", "x"), {}, NOW)
    rejection = rejected(OpenAccount("c" * 129, "a1", "USD", "x"), {})
    assert rejection.kind is RejectionKind.INVALID
    assert rejection.message == "command_id is too long: 129 characters, at most 128"


# --- Deposit ---


def test_deposit_credits_the_account() -> None:
    accounts = given(opened("a1"))
    command = Deposit("d1", "a1", "12.34")

    events = decide(command, accounts, NOW)

    assert events == [
        MoneyDeposited(
            event_id=event_id_for("a1", 2),
            account_id="a1",
            version=2,
            command_id="d1",
            command_fingerprint=fingerprint(command),
            occurred_at=NOW,
            balance_after=1234,
            amount=1234,
        )
    ]
    assert replay(events, accounts)["a1"].balance == 1234


def test_deposit_into_an_unknown_account_is_not_found() -> None:
    rejection = rejected(Deposit("d1", "nobody", "1.00"), {})
    assert rejection.kind is RejectionKind.NOT_FOUND
    assert rejection.message == "account 'nobody' does not exist"


def test_a_malformed_amount_is_invalid_even_before_the_account_is_looked_up() -> None:
    rejection = rejected(Deposit("d1", "nobody", "1,00"), {})
    assert rejection.kind is RejectionKind.INVALID
    assert "amount '1,00' is not a decimal number" in rejection.message


@pytest.mark.parametrize(
    ("amount", "currency", "message"),
    [
        ("0", "USD", "amount '0' must be greater than zero"),
        ("-5", "USD", "amount '-5' is not a decimal number"),
        ("1.001", "USD", "amount '1.001' has 3 decimal places but USD allows at most 2"),
        ("1.5", "JPY", "amount '1.5' has 1 decimal places but JPY allows at most 0"),
        ("92233720368547758.08", "USD", "is too large"),
    ],
)
def test_deposit_of_a_bad_amount_is_invalid(amount: str, currency: str, message: str) -> None:
    rejection = rejected(Deposit("d1", "a1", amount), given(opened("a1", currency)))
    assert rejection.kind is RejectionKind.INVALID
    assert message in rejection.message


def test_deposit_into_a_closed_account_is_a_failed_precondition() -> None:
    rejection = rejected(Deposit("d1", "a1", "1.00"), given(*closed("a1")))
    assert rejection.kind is RejectionKind.PRECONDITION
    assert rejection.message == "cannot deposit into account 'a1': it is closed"


def test_deposit_that_would_exceed_64_bits_is_a_failed_precondition() -> None:
    accounts = given(*funded("a1", "9223372036854775807", currency="JPY"))
    rejection = rejected(Deposit("d2", "a1", "1"), accounts)
    assert rejection.kind is RejectionKind.PRECONDITION
    assert "account 'a1' cannot hold more than 9223372036854775807 JPY" in rejection.message


def test_deposit_with_the_current_expected_version_is_accepted() -> None:
    [event] = decide(Deposit("d1", "a1", "1.00", expected_version=1), given(opened("a1")), NOW)
    assert event.version == 2


def test_deposit_with_a_stale_expected_version_is_a_version_conflict() -> None:
    accounts = given(*funded("a1", "5.00"))
    rejection = rejected(Deposit("d2", "a1", "1.00", expected_version=1), accounts)
    assert rejection.kind is RejectionKind.VERSION_CONFLICT
    assert rejection.message == (
        "account 'a1' is at version 2, not the expected version 1: read it again and decide anew"
    )


def test_an_expected_version_below_1_is_invalid() -> None:
    rejection = rejected(Deposit("d1", "a1", "1.00", expected_version=0), given(opened("a1")))
    assert rejection.kind is RejectionKind.INVALID
    assert "expected_version must be at least 1" in rejection.message


# --- Withdraw ---


def test_withdraw_debits_the_account() -> None:
    accounts = given(*funded("a1", "10.00"))
    command = Withdraw("w1", "a1", "2.50", expected_version=2)

    events = decide(command, accounts, NOW)

    assert events == [
        MoneyWithdrawn(
            event_id=event_id_for("a1", 3),
            account_id="a1",
            version=3,
            command_id="w1",
            command_fingerprint=fingerprint(command),
            occurred_at=NOW,
            balance_after=750,
            amount=250,
        )
    ]


def test_withdrawing_the_whole_balance_leaves_zero() -> None:
    accounts = given(*funded("a1", "10.00"))
    assert replay(decide(Withdraw("w1", "a1", "10"), accounts, NOW), accounts)["a1"].balance == 0


def test_withdrawing_more_than_the_balance_is_insufficient_funds() -> None:
    rejection = rejected(Withdraw("w1", "a1", "12.00"), given(*funded("a1", "10.00")))
    assert rejection.kind is RejectionKind.PRECONDITION
    assert rejection.message == (
        "insufficient funds: account 'a1' balance 10.00 USD, withdrawal 12.00 USD"
    )


def test_withdraw_from_an_unknown_account_is_not_found() -> None:
    assert rejected(Withdraw("w1", "a1", "1"), {}).kind is RejectionKind.NOT_FOUND


def test_withdraw_from_a_closed_account_is_a_failed_precondition() -> None:
    rejection = rejected(Withdraw("w1", "a1", "1.00"), given(*closed("a1")))
    assert rejection.kind is RejectionKind.PRECONDITION
    assert rejection.message == "cannot withdraw from account 'a1': it is closed"


def test_withdraw_with_a_stale_expected_version_is_a_version_conflict() -> None:
    rejection = rejected(Withdraw("w1", "a1", "1.00", expected_version=3), given(opened("a1")))
    assert rejection.kind is RejectionKind.VERSION_CONFLICT


def test_withdraw_of_too_many_decimals_is_invalid() -> None:
    rejection = rejected(Withdraw("w1", "a1", "1.005"), given(*funded("a1", "10.00")))
    assert rejection.kind is RejectionKind.INVALID


# --- Transfer ---


def test_transfer_debits_the_source_and_credits_the_destination() -> None:
    accounts = given(*funded("src", "10.00"), opened("dst"))
    command = Transfer("t1", "src", "dst", "4.00", expected_version=2)

    events = decide(command, accounts, NOW)

    assert events == [
        TransferDebited(
            event_id=event_id_for("src", 3),
            account_id="src",
            version=3,
            command_id="t1",
            command_fingerprint=fingerprint(command),
            occurred_at=NOW,
            balance_after=600,
            amount=400,
            transfer_id="t1",
            counterparty_id="dst",
        ),
        TransferCredited(
            event_id=event_id_for("dst", 2),
            account_id="dst",
            version=2,
            command_id="t1",
            command_fingerprint=fingerprint(command),
            occurred_at=NOW,
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


# --- CloseAccount ---


def test_close_account_at_zero_balance() -> None:
    accounts = given(opened("a1"))
    command = CloseAccount("x1", "a1", expected_version=1)

    events = decide(command, accounts, NOW)

    assert events == [
        AccountClosed(
            event_id=event_id_for("a1", 2),
            account_id="a1",
            version=2,
            command_id="x1",
            command_fingerprint=fingerprint(command),
            occurred_at=NOW,
            balance_after=0,
        )
    ]
    assert replay(events, accounts)["a1"].status is AccountStatus.CLOSED


def test_closing_a_non_zero_balance_is_a_failed_precondition() -> None:
    rejection = rejected(CloseAccount("x1", "a1"), given(*funded("a1", "0.01")))
    assert rejection.kind is RejectionKind.PRECONDITION
    assert rejection.message == (
        "cannot close account 'a1': its balance is 0.01 USD, and only a zero balance can be closed"
    )


def test_closing_a_closed_account_is_a_failed_precondition() -> None:
    rejection = rejected(CloseAccount("x2", "a1"), given(*closed("a1")))
    assert rejection.kind is RejectionKind.PRECONDITION
    assert rejection.message == "cannot close account 'a1': it is already closed"


def test_closing_an_unknown_account_is_not_found() -> None:
    assert rejected(CloseAccount("x1", "a1"), {}).kind is RejectionKind.NOT_FOUND


def test_close_with_a_stale_expected_version_is_a_version_conflict() -> None:
    rejection = rejected(CloseAccount("x1", "a1", expected_version=2), given(opened("a1")))
    assert rejection.kind is RejectionKind.VERSION_CONFLICT


# --- time and identity ---


def test_occurred_at_is_now_in_utc_truncated_to_milliseconds() -> None:
    now = datetime(2024, 5, 1, 14, 30, 15, 123987, tzinfo=timezone(timedelta(hours=2)))
    [event] = decide(opened("a1"), {}, now)
    assert event.occurred_at == datetime(2024, 5, 1, 12, 30, 15, 123000, tzinfo=UTC)
    assert event.occurred_at.utcoffset() == timedelta(0)


def test_a_naive_now_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        decide(opened("a1"), {}, datetime(2024, 5, 1))


def test_deciding_is_deterministic() -> None:
    accounts = given(*funded("a1", "5.00"), opened("a2"))
    command = Transfer("t1", "a1", "a2", "1.00")
    assert decide(command, accounts, NOW) == decide(command, accounts, NOW)
