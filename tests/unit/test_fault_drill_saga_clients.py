"""The drill's clients are saga-aware: a cross-shard transfer answered PENDING keeps its money in
flight (the destination is not credited, neither account may be retired) until its end is known;
a refunded transfer gives the source its money back. Before the fold, the drill waits until the
log holds no saga in flight, and says so when the bound passes."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from fault_drill.book import COMPLETED, OPEN, REFUNDED, UNCERTAIN, UNKNOWN, Book
from fault_drill.calls import GiveUp, RetryPolicy, send, settle
from fault_drill.event_log import LogRecord
from fault_drill.journal import OK, CommandRecord, Journal, Kind, Mode, Status
from fault_drill.sagas import sagas_of, wait_sagas_ended
from ledger.command_ids import new_command_id
from ledger.events import records
from ledger.v1 import commands_pb2 as cmd
from tests.unit.test_fault_drill_saga_checks import CREDITED, SENT
from tests.unit.test_fault_drill_saga_checks import REFUNDED as REFUND_EVENT


def _open(book: Book, account_id: str, balance: int) -> None:
    record = CommandRecord(new_command_id(), Kind.OPEN, 0, (account_id,), None, "EUR", OK, {})
    record.status, record.version, record.token = Status.ACKNOWLEDGED, 1, "t"
    book.begin(record)
    book.end(record)
    book.accounts[account_id].balance = balance


def _transfer(book: Book, *, pending: bool) -> CommandRecord:
    record = CommandRecord(new_command_id(), Kind.TRANSFER, 0, ("a", "b"), 300, "EUR", OK, {})
    book.begin(record)
    record.status, record.version, record.token = Status.ACKNOWLEDGED, 2, "t"
    record.answered_pending = pending
    book.end(record)
    return record


def _book() -> Book:
    book = Book()
    _open(book, "a", 1000)
    _open(book, "b", 0)
    return book


def test_a_transfer_answered_completed_moves_the_money_at_once() -> None:
    book = _book()

    _transfer(book, pending=False)

    assert (book.accounts["a"].balance, book.accounts["b"].balance) == (700, 300)
    assert book.accounts["a"].idle.is_set()
    assert book.accounts["b"].idle.is_set()


@pytest.mark.parametrize(
    ("end", "balances", "state"),
    [(COMPLETED, (700, 300), OPEN), (REFUNDED, (1000, 0), OPEN), (UNKNOWN, (700, 0), UNCERTAIN)],
)
def test_a_transfer_answered_pending_holds_both_accounts_until_its_end_is_known(
    end: str, balances: tuple[int, int], state: str
) -> None:
    book = _book()

    record = _transfer(book, pending=True)

    a, b = book.accounts["a"], book.accounts["b"]
    assert (a.balance, b.balance) == (700, 0)
    assert not a.idle.is_set()
    assert not b.idle.is_set()
    assert a.available == 700

    book.saga_ended(record, end)

    assert (a.balance, b.balance) == balances
    assert a.idle.is_set()
    assert b.idle.is_set()
    assert (a.state, b.state) == (state, state)


class _Answers:
    def __init__(self, status: cmd.TransferStatus.ValueType) -> None:
        self._status = status

    async def __call__(self, deadline: float) -> cmd.TransferResponse:
        return cmd.TransferResponse(version=2, consistency_token="t", status=self._status)


@pytest.mark.parametrize(
    ("status", "pending"),
    [(cmd.TRANSFER_STATUS_PENDING, True), (cmd.TRANSFER_STATUS_COMPLETED, False)],
)
async def test_the_journal_knows_which_transfers_were_answered_pending(
    status: cmd.TransferStatus.ValueType, pending: bool
) -> None:
    record = CommandRecord(new_command_id(), Kind.TRANSFER, 0, ("a", "b"), 1, "EUR", OK, {})

    final = await send(
        record,
        _Answers(status),
        journal=Journal(),
        policy=RetryPolicy(1.0, 0.01, 0.01),
        rng=random.Random(1),
        give_up=GiveUp(),
        mode=Mode.PLAIN,
    )
    settle(record, final)

    assert record.status is Status.ACKNOWLEDGED
    assert record.answered_pending is pending


def _record(
    event: records.TransferSent | records.TransferCredited | records.TransferRefunded,
    transfer_id: str,
    offset: int,
) -> LogRecord:
    """The saga checks' event of that kind, for another transfer, at `offset` in the log."""
    return LogRecord(0, offset, "a", replace(event, transfer_id=transfer_id), None)


SENT_1 = _record(SENT, "t1", 0)
SENT_2 = _record(SENT, "t2", 1)
CREDITED_1 = _record(CREDITED, "t1", 2)
REFUNDED_2 = _record(REFUND_EVENT, "t2", 3)
SAME_SHARD = _record(CREDITED, "t3", 4)


def test_the_log_tells_which_sagas_ended_how_and_which_are_in_flight() -> None:
    sagas = sagas_of([SENT_1, SENT_2, CREDITED_1, SAME_SHARD])

    assert sagas.in_flight == {"t2"}
    assert (sagas.end_of("t1"), sagas.end_of("t2")) == (COMPLETED, UNKNOWN)
    assert sagas_of([SENT_1, SENT_2, CREDITED_1, REFUNDED_2]).end_of("t2") == REFUNDED


async def test_the_drill_reads_the_log_until_no_saga_is_in_flight() -> None:
    reads = iter([[SENT_1, SENT_2], [SENT_1, SENT_2, CREDITED_1, REFUNDED_2]])

    ended = await wait_sagas_ended(lambda: next(reads), deadline_s=30, poll_s=0.01)

    assert not ended.sagas.in_flight
    assert len(ended.records) == 4


async def test_a_saga_still_in_flight_at_the_bound_is_returned_not_waited_for_forever() -> None:
    ended = await wait_sagas_ended(lambda: [SENT_1], deadline_s=0.05, poll_s=0.01)

    assert ended.sagas.in_flight == {"t1"}
    assert ended.waited_s >= 0.05
