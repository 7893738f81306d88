"""The Batcher's atomic spans (one ExecuteBatch with `atomic`): all of a span's commands are
applied, or none, and the rest of the transaction is decided as if the span had not been."""

from __future__ import annotations

from command_server.write_model import WriteModel
from command_server.writer.batcher import Batcher
from command_server.writer.protocol import (
    Ack,
    AtomicSpan,
    NotApplied,
    pack_command,
    unpack_verdict,
)
from ledger.domain.commands import Command, Deposit, Transfer, Withdraw
from ledger.domain.rejection import RejectionKind
from tests.unit import test_batcher
from tests.unit.fake_event_store import FakeEventStore
from tests.unit.test_batcher import funded, opened, rejection

# The same event store, model and batcher as test_batcher's.
store = test_batcher.store
model = test_batcher.model
batcher = test_batcher.batcher


def commit(
    batcher: Batcher, commands: list[Command], atomic: list[AtomicSpan]
) -> list[Ack | BaseException]:
    _, _, verdicts = batcher.commit([pack_command(c) for c in commands], atomic)
    return [unpack_verdict(v) for v in verdicts]


def test_an_atomic_chain_moves_money_the_middle_account_only_has_from_the_first(
    batcher: Batcher, model: WriteModel, store: FakeEventStore
) -> None:
    funded(batcher, "a", "10.00")
    funded(batcher, "b", "0.01")
    funded(batcher, "c", "0.01")
    chain: list[Command] = [Transfer("t1", "a", "b", "10.00"), Transfer("t2", "b", "c", "10.00")]

    answers = commit(batcher, chain, [(0, 2)])

    assert all(isinstance(a, Ack) for a in answers), answers
    assert [model.accounts[x].balance for x in "abc"] == [0, 1, 1001]


def test_one_failure_applies_nothing_of_the_span_and_the_others_say_because_of_which(
    batcher: Batcher, model: WriteModel, store: FakeEventStore
) -> None:
    funded(batcher, "a", "10.00")
    appended = len(store.appended)
    span: list[Command] = [
        Deposit("d1", "a", "5.00"),
        Withdraw("w1", "a", "100.00"),
        Deposit("d2", "a", "1.00"),
        Deposit("d1", "a", "5.00"),  # a duplicate of the first: taken back with it
    ]

    first, failed, third, duplicate = commit(batcher, span, [(0, 4)])

    assert rejection(failed) is RejectionKind.PRECONDITION
    for answer in (first, third, duplicate):
        assert isinstance(answer, NotApplied), answer
        assert "command 1 of the atomic batch failed" in str(answer)
    assert len(store.appended) == appended
    assert model.accounts["a"].balance == 1000
    assert model.outcome("d1") is None


def test_a_failed_span_leaves_the_rest_of_the_transaction_as_if_it_had_not_been(
    batcher: Batcher, model: WriteModel, store: FakeEventStore
) -> None:
    funded(batcher, "a", "10.00")
    commands: list[Command] = [
        Withdraw("w1", "a", "10.00"),  # atomic with the next, which fails
        Deposit("d1", "nobody", "1.00"),
        Withdraw("w2", "a", "10.00"),  # alone: the money w1 would have taken is still there
        Deposit("d1", "a", "1.00"),  # its id is free again: d1 was never applied
    ]

    taken_back, failed, alone, reused_id = commit(batcher, commands, [(0, 2)])

    assert isinstance(taken_back, NotApplied)
    assert rejection(failed) is RejectionKind.NOT_FOUND
    assert isinstance(alone, Ack)
    assert isinstance(reused_id, Ack)
    assert model.accounts["a"].balance == 100
    assert [event.command_id for event, _ in store.appended][-2:] == ["w2", "d1"]


def test_a_span_already_applied_is_answered_from_its_originals(
    batcher: Batcher, store: FakeEventStore
) -> None:
    funded(batcher, "a", "10.00")
    span: list[Command] = [Deposit("d1", "a", "1.00"), Withdraw("w1", "a", "2.00")]
    first = commit(batcher, span, [(0, 2)])
    appended = len(store.appended)

    again = commit(batcher, [opened("b"), *span], [(1, 3)])

    assert again[1:] == first
    assert len(store.appended) == appended + 1  # only b's opening


def test_a_command_another_call_of_the_transaction_applied_stays_applied_in_a_failed_span(
    batcher: Batcher, model: WriteModel, store: FakeEventStore
) -> None:
    funded(batcher, "a", "10.00")
    shared = Deposit("d1", "a", "1.00")
    commands: list[Command] = [shared, shared, Deposit("d2", "nobody", "1.00")]

    alone, in_span, failed = commit(batcher, commands, [(1, 3)])

    assert isinstance(alone, Ack)
    assert in_span == alone
    assert rejection(failed) is RejectionKind.NOT_FOUND
    assert model.accounts["a"].balance == 1100
