"""The limits of ExecuteBatch and GetAccounts: 8,000 of the largest valid commands fit in the
command server's receive limit, and GetAccounts' ids are checked as documented."""

from __future__ import annotations

import pytest

from command_server.servicer import MAX_BATCH_COMMANDS
from command_server.settings import MAX_RECEIVE_BYTES
from ledger.command_ids import new_command_id
from ledger.domain.validation import MAX_MEMO_LENGTH, MAX_OWNER_LENGTH, MAX_REFERENCE_LENGTH
from ledger.v1 import commands_pb2 as cmd
from query_server import validation
from query_server.errors import InvalidArgument


def _largest_commands() -> list[cmd.Command]:
    """Of each kind, the largest command `require_fields` lets through."""
    longest_id = "a" * 64
    amount = "9" * 40  # at most 40 characters; its value is checked later, against the account
    widest = "\U0001f600"  # four bytes in UTF-8
    return [
        cmd.Command(
            open_account=cmd.OpenAccountRequest(
                command_id=new_command_id(),
                account_id=longest_id,
                currency="EUR",
                owner="\U0001f600" * MAX_OWNER_LENGTH,  # four bytes each in UTF-8
            )
        ),
        cmd.Command(
            transfer=cmd.TransferRequest(
                command_id=new_command_id(),
                from_account_id=longest_id,
                to_account_id="b" * 64,
                amount=amount,
                expected_version=2**63 - 1,
                reference=widest * MAX_REFERENCE_LENGTH,
                memo=widest * MAX_MEMO_LENGTH,
            )
        ),
        cmd.Command(
            withdraw=cmd.WithdrawRequest(
                command_id=new_command_id(),
                account_id=longest_id,
                amount=amount,
                expected_version=2**63 - 1,
                reference=widest * MAX_REFERENCE_LENGTH,
                memo=widest * MAX_MEMO_LENGTH,
            )
        ),
    ]


def test_a_full_batch_of_the_largest_commands_fits_the_receive_limit() -> None:
    largest = max(_largest_commands(), key=lambda c: c.ByteSize())
    request = cmd.ExecuteBatchRequest(commands=[largest] * MAX_BATCH_COMMANDS, atomic=True)

    assert MAX_BATCH_COMMANDS >= 8_000
    assert request.ByteSize() <= MAX_RECEIVE_BYTES


def test_get_accounts_takes_1_to_1000_ids_and_reads_a_repeated_one_once() -> None:
    assert validation.account_ids(["b", "a", "b"]) == ["b", "a"]
    assert len(validation.account_ids([f"a{n}" for n in range(1000)])) == 1000
    for count in (0, 1001):
        with pytest.raises(InvalidArgument, match="ask for 1 to 1,000 per call"):
            validation.account_ids(["a"] * count)


def test_get_accounts_names_the_malformed_id() -> None:
    with pytest.raises(InvalidArgument, match=r"account_ids\[1\] 'a b'"):
        validation.account_ids(["ok", "a b"])
