"""GetTransfer and the trial balance's money in flight, without I/O: the request's check, the
row's message, and the servicer's refusal of a token that may read neither account."""

from __future__ import annotations

import asyncio
import dataclasses
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import pytest

from ledger.auth.policy import READ, rule_for
from ledger.auth.principal import Principal, current_principal
from ledger.v1 import queries_pb2 as pb
from query_server import messages, validation
from query_server.errors import InvalidArgument, PermissionDenied
from query_server.rows import CurrencyTotalsRow, Snapshot, TransferRow
from query_server.servicer import QueryServicer, ReadSide

AT = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)
SENT = TransferRow("t-1", "alice", "bob", "EUR", Decimal("1.50"), True, AT, None, None, None)


def test_a_transfer_id_must_be_a_printable_command_id() -> None:
    assert validation.transfer_id("0190e0d8-1b2c-7d3e-8f40-123456789abc") != ""
    for bad, says in (
        ("", "required"),
        ("x" * 129, "at most 128"),
        ("t\x00", "control character U"),
    ):
        with pytest.raises(InvalidArgument, match=says):
            validation.transfer_id(bad)


@pytest.mark.parametrize(
    ("credited", "refunded", "state"),
    [
        (None, None, pb.TRANSFER_STATE_PENDING),
        (AT, None, pb.TRANSFER_STATE_COMPLETED),
        (None, AT, pb.TRANSFER_STATE_REFUNDED),
    ],
)
def test_a_transfers_state_follows_its_steps(
    credited: datetime | None, refunded: datetime | None, state: int
) -> None:
    reason = "closed" if refunded else None
    row = dataclasses.replace(
        SENT, credited_at=credited, refunded_at=refunded, refund_reason=reason
    )
    message = messages.transfer(row)
    assert message.state == state
    assert message.amount == "1.50"
    assert message.HasField("sent_at")
    assert message.HasField("credited_at") == (credited is not None)
    assert message.refund_reason == ("closed" if refunded else "")


def test_a_credit_seen_before_its_send_is_completed_without_a_send_time() -> None:
    row = TransferRow("t-2", "alice", "bob", "JPY", Decimal(7), None, None, AT, None, None)
    message = messages.transfer(row)
    assert message.state == pb.TRANSFER_STATE_COMPLETED
    assert not message.HasField("sent_at")
    assert not message.cross_shard


def test_the_trial_balance_shows_money_in_flight_deposits_and_withdrawals() -> None:
    row = CurrencyTotalsRow(
        "EUR", Decimal("10.00"), Decimal("4.00"), 5, 2, 0, Decimal("3.00"), Decimal("1.00")
    )
    totals = messages.currency_totals(row)
    assert (totals.total_balance, totals.money_in_flight) == ("6.00", "2.00")
    assert (totals.deposited, totals.withdrawn) == ("9.00", "1.00")


class _OneTransfer:
    async def transfer(self, transfer_id: str) -> tuple[TransferRow, Snapshot]:
        return SENT, Snapshot({0: 3}, AT)


def _get(accounts: tuple[str, ...] | None) -> Any:
    """GetTransfer's reply as the caller with these account patterns (its refusal raised)."""
    servicer = QueryServicer()
    servicer.read_side = ReadSide(_OneTransfer(), *[None] * 5)  # type: ignore[arg-type]
    call = servicer.GetTransfer.__wrapped__(  # type: ignore[attr-defined]
        servicer, pb.GetTransferRequest(transfer_id="t-1"), None
    )
    token = current_principal.set(Principal("s", frozenset({READ}), accounts))
    try:
        return asyncio.run(call)  # the task copies the context: it runs as that caller
    finally:
        current_principal.reset(token)


def test_a_restricted_token_reads_a_transfer_of_either_of_its_accounts_only() -> None:
    assert rule_for("/ledger.v1.QueryService/GetTransfer") is not None
    assert (_get(None)).transfer.transfer_id == "t-1"
    assert (_get(("bob",))).transfer.to_account_id == "bob"
    assert (_get(("ali*",))).transfer.from_account_id == "alice"
    with pytest.raises(PermissionDenied, match="neither debits nor credits"):
        (_get(("carol", "dave-*")))
