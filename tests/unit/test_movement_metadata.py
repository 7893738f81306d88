"""A movement's `reference` and `memo` (issue 23): checked with the other fields, part of the
command's fingerprint only when given, carried by every event of the movement, bound to
ListTransactions' page tokens; and the schema history they started a new version of."""

from __future__ import annotations

import json

import pytest

from command_server import requests
from ledger.command_ids import new_command_id
from ledger.domain.commands import (
    CloseAccount,
    Command,
    Deposit,
    OpenAccount,
    Transfer,
    Withdraw,
    fingerprint,
    literal_fingerprint,
)
from ledger.domain.decider import decide
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.domain.validation import MAX_MEMO_LENGTH, MAX_REFERENCE_LENGTH, require_fields
from ledger.events import direct_reader
from ledger.events.avro_mapping import current_schema
from ledger.events.schema_history import released_schemas
from ledger.v1 import commands_pb2 as cmd
from ledger.v1 import queries_pb2 as pb
from query_server import validation
from query_server.errors import InvalidArgument
from tests.unit.decider_givens import NOW, funded, given, opened


def _movements(reference: str = "", memo: str = "") -> list[Command]:
    return [
        Deposit(new_command_id(), "a", "1", reference=reference, memo=memo),
        Withdraw(new_command_id(), "a", "1", reference=reference, memo=memo),
        Transfer(new_command_id(), "a", "b", "1", reference=reference, memo=memo),
    ]


@pytest.mark.parametrize(
    ("reference", "memo"),
    [
        ("r" * MAX_REFERENCE_LENGTH, "m" * MAX_MEMO_LENGTH),
        ("E2E/Ä-7 ✓", "Miete März 🏠, 李四"),
        ("", "\u0645\u06cc\u200c\u062e"),  # ZWNJ is allowed, as in owners
    ],
)
def test_metadata_up_to_its_limits_in_any_script_is_accepted(reference: str, memo: str) -> None:
    for command in _movements(reference, memo):
        require_fields(command)


@pytest.mark.parametrize(
    ("reference", "memo", "message"),
    [
        ("r" * 65, "", "reference is too long: 65 characters, at most 64"),
        ("", "m" * 129, "memo is too long: 129 characters, at most 128"),
        ("a\x00b", "", "reference contains the invisible or control character U+0000 at position"),
        ("", "line\nbreak", "memo contains the invisible or control character U+000A at position"),
        ("", "\u202egnp.exe", "memo contains the invisible or control character U+202E"),
    ],
)
def test_bad_metadata_is_invalid_naming_the_field(reference: str, memo: str, message: str) -> None:
    for command in _movements(reference, memo):
        with pytest.raises(Rejection) as refused:
            require_fields(command)
        assert refused.value.kind is RejectionKind.INVALID
        assert refused.value.message.startswith(message)


def test_a_command_without_metadata_hashes_as_before_metadata_existed() -> None:
    # Fingerprints recorded before: a retry of such a command must still match them.
    canonical = '{"account_id":"a1","amount":"12.34","expected_version":null,"type":"deposit"}'
    plain = Deposit("c1", "a1", "12.34")
    assert json.loads(canonical) == {
        "type": "deposit",
        "account_id": "a1",
        "amount": "12.34",
        "expected_version": None,
    }
    assert fingerprint(plain) == (
        "5c46e2adc556d74340593012da211df16b051149196e8f0a5421471eca4bdcf9"
    )
    assert literal_fingerprint(plain) == fingerprint(plain)


def test_metadata_is_part_of_the_command() -> None:
    for kind in (Deposit, Withdraw):
        base = kind("c1", "a1", "7.5")
        with_reference = kind("c1", "a1", "7.50", reference="r1")
        prints = {
            fingerprint(base),
            fingerprint(with_reference),
            fingerprint(kind("c1", "a1", "7.5", reference="r2")),
            fingerprint(kind("c1", "a1", "7.5", memo="r1")),
            fingerprint(kind("c1", "a1", "7.5", reference="r1", memo="m")),
        }
        assert len(prints) == 5, kind
        # The same metadata is the same command (amounts still compared as numbers).
        assert fingerprint(kind("c2", "a1", "007.5", reference="r1")) == fingerprint(with_reference)
    transfer = Transfer("c1", "a", "b", "1", memo="x")
    assert fingerprint(transfer) != fingerprint(Transfer("c1", "a", "b", "1", memo="y"))


def test_every_event_of_a_movement_carries_its_metadata_and_no_other_event_does() -> None:
    accounts = given(*funded("a", "10"), opened("b"))
    transfer = Transfer(new_command_id(), "a", "b", "1", reference="pay-1", memo="rent")
    deposit = Deposit(new_command_id(), "b", "1", reference="dep-1")
    legs = decide(transfer, accounts, NOW)
    (deposited,) = decide(deposit, accounts, NOW)
    (opening,) = decide(OpenAccount(new_command_id(), "c", "USD", "o"), accounts, NOW)
    (closing,) = decide(CloseAccount(new_command_id(), "b"), accounts, NOW)

    assert [(e.reference, e.memo) for e in legs] == [("pay-1", "rent")] * 2
    assert (deposited.reference, deposited.memo) == ("dep-1", "")
    assert {(opening.reference, opening.memo), (closing.reference, closing.memo)} == {("", "")}


def test_the_requests_carry_their_metadata_into_the_commands() -> None:
    deposit = cmd.DepositRequest(command_id="c", account_id="a", amount="1", reference="r")
    withdraw = cmd.WithdrawRequest(command_id="c", account_id="a", amount="1", memo="m")
    transfer = cmd.TransferRequest(
        command_id="c", from_account_id="a", to_account_id="b", amount="1", reference="r", memo="m"
    )
    assert (requests.deposit(deposit).reference, requests.deposit(deposit).memo) == ("r", "")
    assert (requests.withdraw(withdraw).reference, requests.withdraw(withdraw).memo) == ("", "m")
    batched = requests.command_of(cmd.Command(transfer=transfer))
    assert isinstance(batched, Transfer)
    assert (batched.reference, batched.memo) == ("r", "m")


def test_the_reference_filter_is_checked_and_bound_to_the_page_token() -> None:
    plain = pb.ListTransactionsRequest(account_id="a")
    plain_token = validation.list_transactions(plain).page.token_after((5,))
    filtered = pb.ListTransactionsRequest(account_id="a", reference="pay-1")
    query = validation.list_transactions(filtered)
    assert query.reference == "pay-1"
    filtered_token = query.page.token_after((5,))
    # A token without a reference is what it was before the filter existed.
    assert plain_token != filtered_token
    for request, token in ((plain, filtered_token), (filtered, plain_token)):
        request.page_token = token
        with pytest.raises(InvalidArgument, match="different"):
            validation.list_transactions(request)
    filtered.page_token = filtered_token
    assert validation.list_transactions(filtered).page.after == (5,)
    for bad, message in (("r" * 65, "reference is too long"), ("a\tb", r"U\+0009")):
        with pytest.raises(InvalidArgument, match=message):
            validation.list_transactions(pb.ListTransactionsRequest(account_id="a", reference=bad))


def test_the_schema_history_ends_with_the_live_schema_and_has_no_gap() -> None:
    history = released_schemas()
    assert [version for version, _ in history] == list(range(1, len(history) + 1))
    assert json.loads(history[-1][1]) == json.loads(current_schema()), (
        "the live schema changed: add it to ledger/events/schemas/history as the next version"
    )
    assert len({text for _, text in history}) == len(history)
    # The codec reads the live schema's bodies directly (the fast path) ...
    assert direct_reader.layout_of(json.loads(current_schema())) == direct_reader.LAYOUT
    # ... and no earlier version's: those go through schema resolution.
    for _, text in history[:-1]:
        assert direct_reader.layout_of(json.loads(text)) != direct_reader.LAYOUT
