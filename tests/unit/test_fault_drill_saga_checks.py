"""The drill's command checks know the cross-shard saga: a transfer's effect is a debit and a
credit on one shard, or a send then a credit or a refund across shards; its answer's token covers
the send alone; a refunded transfer moves no money."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from fault_drill.command_checks import _effects_match, _refund_answer, _refunded
from fault_drill.event_log import LogRecord
from fault_drill.journal import OK, CommandRecord, Kind
from ledger.events import records

AT = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
TRANSFER_ID = "01a25118-d1f3-7f7f-bfa3-34aed2113afa"


def _event(kind: Any, account_id: str, counterparty: str, **own: Any) -> Any:
    return kind(
        event_id=f"e-{account_id}",
        account_id=account_id,
        version=2,
        command_id=TRANSFER_ID,
        command_fingerprint="ab" * 32,
        occurred_at=AT,
        amount=500,
        transfer_id=TRANSFER_ID,
        counterparty_id=counterparty,
        **own,
    )


SENT = _event(records.TransferSent, "a", "b")
DEBITED = _event(records.TransferDebited, "a", "b")
CREDITED = _event(records.TransferCredited, "b", "a")
REFUNDED = _event(records.TransferRefunded, "a", "b", reason="account 'b' is closed")
RECORD = CommandRecord(TRANSFER_ID, Kind.TRANSFER, 0, ("a", "b"), 500, "USD", OK, {})


@pytest.mark.parametrize(
    ("events", "matches"),
    [
        ([DEBITED, CREDITED], True),
        ([SENT, CREDITED], True),
        ([SENT, REFUNDED], True),
        ([DEBITED, REFUNDED], False),
        ([SENT, _event(records.TransferCredited, "c", "a")], False),
        ([SENT, _event(records.TransferRefunded, "b", "a", reason="")], False),
    ],
)
def test_a_transfers_effects_are_one_shards_or_the_sagas(
    events: list[records.Event], matches: bool
) -> None:
    assert _effects_match(RECORD, events) is matches


def test_only_a_refund_makes_a_transfer_move_no_money() -> None:
    def logged(*events: records.Event) -> list[LogRecord]:
        return [LogRecord(p, 1, e.account_id, e, None) for p, e in enumerate(events)]

    assert _refunded(logged(SENT, REFUNDED))
    assert not _refunded(logged(SENT, CREDITED))
    assert not _refunded(logged(DEBITED, CREDITED))


def test_a_refunded_transfer_answered_failed_precondition_is_the_sagas_answer_only() -> None:
    refunded = [LogRecord(0, 1, "a", SENT, None), LogRecord(0, 2, "a", REFUNDED, None)]
    credited = [LogRecord(0, 1, "a", SENT, None), LogRecord(1, 1, "b", CREDITED, None)]

    assert _refund_answer("FAILED_PRECONDITION", refunded)
    assert not _refund_answer("FAILED_PRECONDITION", credited)
    assert not _refund_answer("NOT_FOUND", refunded)
