"""Cross-shard transfers in the read model's rows, computed without I/O: the transfers row each
event fills whatever order the partitions are applied in, money in flight in the period
totals, the drill's fold and its invariants."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from fault_drill.event_log import LogRecord
from fault_drill.log_fold import fold_log
from ledger.command_ids import new_command_id
from ledger.domain.commands import Deposit, OpenAccount, Transfer
from ledger.events.records import Event, TransferRefunded, TransferSent
from projector.consumed import DecodedRecord
from projector.projection import Projection, project
from projector.transfer_rows import TRANSFER_COLUMNS
from tests.integration.projector.sagas import SagaHistory

T0 = datetime(2026, 5, 1, 12, 0, tzinfo=UTC)


def _history() -> tuple[SagaHistory, dict[str, str]]:
    made = SagaHistory()
    for account_id in ("a", "b", "c"):
        made.decide(OpenAccount(new_command_id(), account_id, "EUR", "o"), T0)
        made.decide(Deposit(new_command_id(), account_id, "10"), T0)
    sent = made.send("a", "b", 300, T0 + timedelta(seconds=1))
    refunded = made.send("b", "c", 200, T0 + timedelta(seconds=2))
    pending = made.send("c", "a", 100, T0 + timedelta(seconds=3))
    assert sent is not None
    assert refunded is not None
    assert pending is not None
    made.credit(sent, T0 + timedelta(seconds=4))
    made.refund(refunded, T0 + timedelta(seconds=5), "account 'c' is closed")
    local = made.decide(Transfer(new_command_id(), "a", "c", "1"), T0 + timedelta(seconds=6))
    return made, {
        "sent": sent,
        "refunded": refunded,
        "pending": pending,
        "local": local[0].command_id,
    }


def _records(events: list[Event], partition: int = 0) -> list[DecodedRecord]:
    return [DecodedRecord(partition, n, event) for n, event in enumerate(events)]


def _transfers(projection: Projection) -> dict[str, dict[str, Any]]:
    return {
        transfer_id: dict(zip(TRANSFER_COLUMNS, row, strict=True))
        for transfer_id, row in projection.transfers.items()
    }


def test_every_transfer_gets_one_row_filled_by_each_of_its_events() -> None:
    made, ids = _history()
    rows = _transfers(project("t", _records(made.events), {}))
    micros = 1_000_000
    start = int(T0.timestamp()) * micros
    assert rows[ids["sent"]] | {"transfer_id": None} == {
        "transfer_id": None,
        "from_account_id": "a",
        "to_account_id": "b",
        "currency": "EUR",
        "amount": 300,
        "exponent": 2,
        "cross_shard": True,
        "sent_us": start + 1 * micros,
        "credited_us": start + 4 * micros,
        "refunded_us": None,
        "refund_reason": None,
    }
    refunded = rows[ids["refunded"]]
    assert (refunded["refunded_us"], refunded["credited_us"]) == (start + 5 * micros, None)
    assert refunded["refund_reason"] == "account 'c' is closed"
    pending = rows[ids["pending"]]
    assert (pending["sent_us"], pending["credited_us"], pending["refunded_us"]) == (
        start + 3 * micros,
        None,
        None,
    )
    local = rows[ids["local"]]
    assert local["cross_shard"] is False
    assert local["sent_us"] == local["credited_us"] == start + 6 * micros


def test_a_credit_projected_before_its_send_fills_the_same_columns() -> None:
    made, ids = _history()
    credit_first = [e for e in made.events if e.account_id == "b"]
    rest = [e for e in made.events if e.account_id != "b"]
    together = _transfers(project("t", _records(made.events), {}))[ids["sent"]]
    # Two batches (two partitions' worth), the credit's first: each fills what it knows.
    early = _transfers(project("t", _records(credit_first, 1), {}))[ids["sent"]]
    assert early["cross_shard"] is None
    assert early["sent_us"] is None
    assert early["credited_us"] == together["credited_us"]
    assert (early["from_account_id"], early["to_account_id"]) == ("a", "b")
    late = _transfers(project("t", _records(rest), {}))[ids["sent"]]
    assert late["credited_us"] is None
    merged = {c: early[c] if early[c] is not None else late[c] for c in TRANSFER_COLUMNS}
    assert merged == together


def test_money_in_flight_is_what_left_by_transfer_less_what_arrived() -> None:
    made, _ = _history()
    projection = project("t", _records(made.events), {})
    out = sum(p.transferred_out for p in projection.seconds.values())
    arrived = sum(p.transferred_in for p in projection.seconds.values())
    assert out - arrived == 100  # the pending one
    kinds = {row[3] for row in projection.movements}
    assert "TRANSFER_REFUND" in kinds
    deposits = sum(p.inflow for p in projection.seconds.values()) - arrived
    withdrawals = sum(p.outflow for p in projection.seconds.values()) - out
    balances = sum(made.accounts[a].balance for a in ("a", "b", "c"))
    assert balances + (out - arrived) == deposits - withdrawals


def _log(events: list[Event]) -> list[LogRecord]:
    return [
        LogRecord(0, offset, event.account_id, event, None) for offset, event in enumerate(events)
    ]


def test_the_drill_fold_reports_a_transfer_in_flight_and_one_ended_twice() -> None:
    made, ids = _history()
    fold = fold_log(_log(made.events))
    assert [v for v in fold.violations if "in flight" in v] == [
        f"transfer {ids['pending']}: still in flight at the end: sent, neither credited nor "
        "refunded"
    ]
    assert len(fold.violations) == 1, fold.violations
    assert fold.in_flight() == {"EUR": 100}
    states = {row[0]: row[6] for row in fold.transfer_rows()}
    assert states == {
        ids["sent"]: "COMPLETED",
        ids["refunded"]: "REFUNDED",
        ids["pending"]: "PENDING",
        ids["local"]: "COMPLETED",
    }

    made.credit(ids["pending"], T0 + timedelta(seconds=9))
    sent = next(e for e in made.events if isinstance(e, TransferSent) and e.account_id == "b")
    refund = next(e for e in made.events if isinstance(e, TransferRefunded))
    twice = TransferRefunded(
        event_id="0f5b1e8e-0d7e-4e0a-9d6c-0a1b2c3d4e5f",
        account_id="b",
        version=made.accounts["b"].version + 1,
        command_id=refund.command_id,
        command_fingerprint="saga",
        occurred_at=T0 + timedelta(seconds=10),
        balance_after=made.accounts["b"].balance + sent.amount,
        amount=sent.amount,
        transfer_id=sent.transfer_id,
        counterparty_id="c",
        reason="again",
    )
    fold = fold_log(_log([*made.events, twice]))
    # Ended twice (refunded twice): the only violation left once the pending one is credited.
    assert fold.violations == [
        f"transfer {sent.transfer_id}: 1 debits or sends and 2 credits or refunds: "
        f"{fold.transfers[sent.transfer_id]}"
    ]
