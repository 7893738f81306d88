"""Deciding a batch while the previous one's transaction is open (`Batcher.decide_ahead`) held
to deciding it after that transaction: the same answers, the same events, the same state,
whether the previous transaction commits or fails."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from command_server.event_store import AppendFailed, AppendUnsettled
from command_server.shards import Shard
from command_server.write_model import WriteModel
from command_server.writer.batcher import Batcher, Opened
from command_server.writer.protocol import AtomicSpan, BatchReply, PackedCommand, pack_command
from ledger.command_ids import new_command_id
from ledger.domain.commands import (
    CloseAccount,
    Command,
    Deposit,
    OpenAccount,
    Transfer,
    Withdraw,
)
from tests.unit.fake_event_store import FakeEventStore
from tests.unit.test_batcher import NOW, funded

SHARD = Shard(index=0, count=1, partitions=4)
ACCOUNTS = ["a", "b", "c", "d"]
IDS = [f"id-{n}" for n in range(12)] + ["open-a", "fund-a", "fund-b"]
"""Few enough that batches reuse each other's ids (retries, duplicates and reuses), and the
funding's: retries of commands folding may forget."""
TIMED_IDS = [f"0190a000-{n:04x}-7000-8000-000000000000" for n in range(12)]
"""UUIDv7s one after the other in time: forgetting them moves horizons (WriteModel.horizons),
which a later batch's ids may be older or newer than."""

accounts = st.sampled_from(ACCOUNTS)
amounts = st.sampled_from(["0.01", "1.00", "3.00", "10.00", "20.00"])


def commands(ids: st.SearchStrategy[str]) -> st.SearchStrategy[Command]:
    return st.one_of(
        st.builds(OpenAccount, ids, accounts, st.just("USD"), st.just("someone")),
        st.builds(Deposit, ids, accounts, amounts),
        st.builds(Withdraw, ids, accounts, amounts),
        st.builds(Transfer, ids, accounts, accounts, amounts),
        st.builds(CloseAccount, ids, accounts),
    )


Batch = tuple[list[PackedCommand], list[AtomicSpan]]


@st.composite
def batches(draw: st.DrawFn, ids: list[str] = IDS) -> Batch:
    batch = draw(st.lists(commands(st.sampled_from(ids)), max_size=8))
    spans: list[AtomicSpan] = []
    start = 0
    while start < len(batch):
        stop = draw(st.integers(start + 1, len(batch)))
        if draw(st.booleans()):
            spans.append((start, stop))
        start = stop
    return [pack_command(c) for c in batch], spans


def _ledger(window: int = 1000) -> tuple[Batcher, FakeEventStore, WriteModel]:
    """Two accounts funded; with a small `window`, folding forgets outcomes as it goes."""
    model = WriteModel(window, SHARD.owned_partitions, chunk_entries=2 if window < 10 else 100)
    store = FakeEventStore()
    batcher = Batcher(model, store, SHARD, clock=lambda: NOW)
    funded(batcher, "a", "10.00")
    funded(batcher, "b", "3.00")
    return batcher, store, model


def _pipelined(
    batcher: Batcher,
    first: tuple[list[PackedCommand], list[AtomicSpan]],
    second: tuple[list[PackedCommand], list[AtomicSpan]],
) -> tuple[BatchReply, BatchReply, bool]:
    """As the writer's loop does it: the second decided while the first is open."""
    opened = batcher.open(*first)
    if not isinstance(opened, Opened):
        return opened, batcher.commit(*second), False
    ahead = batcher.decide_ahead(*second, after=opened)
    settled = batcher.settle(opened)
    produced = batcher.open_ahead(ahead) if ahead is not None else None
    reply = batcher.reply(settled)
    following = produced or batcher.open(*second)
    if isinstance(following, Opened):
        return reply, batcher.close(following), ahead is not None
    return reply, following, ahead is not None


@settings(max_examples=400, deadline=None)
@given(
    first=batches(),
    second=batches(),
    failure=st.sampled_from([None, "aborted", "unsettled", "unsettled but committed"]),
    window=st.sampled_from([1000, 3]),
)
def test_deciding_ahead_answers_and_appends_as_deciding_after(
    first: tuple[list[PackedCommand], list[AtomicSpan]],
    second: tuple[list[PackedCommand], list[AtomicSpan]],
    failure: str | None,
    window: int,
) -> None:
    ledgers = [_ledger(window), _ledger(window)]
    for _, store, _ in ledgers:
        if failure is not None:
            store.fail_next = (
                AppendFailed("aborted") if failure == "aborted" else AppendUnsettled(failure)
            )
            store.commit_anyway = failure == "unsettled but committed"
    _assert_pipelined_as_after(ledgers, first, second)


@settings(max_examples=300, deadline=None)
@given(history=batches(TIMED_IDS), first=batches(TIMED_IDS + IDS), second=batches(TIMED_IDS + IDS))
def test_deciding_ahead_answers_as_deciding_after_where_forgetting_moves_horizons(
    history: Batch, first: Batch, second: Batch
) -> None:
    ledgers = [_ledger(3), _ledger(3)]
    for batcher, _, _ in ledgers:
        batcher.commit(*history)
    _assert_pipelined_as_after(ledgers, first, second)


def _assert_pipelined_as_after(
    ledgers: list[tuple[Batcher, FakeEventStore, WriteModel]], first: Batch, second: Batch
) -> None:
    """Two ledgers alike: the first commits `first` then `second`, the second decides `second`
    while `first` is open; the same answers, log and state."""
    (after, after_store, after_model), (ahead, ahead_store, ahead_model) = ledgers
    expected = after.commit(*first), after.commit(*second)
    *replies, _ = _pipelined(ahead, first, second)
    assert replies == list(expected)
    assert ahead_store.log == after_store.log
    assert ahead_model.accounts == after_model.accounts
    assert ahead_model.positions == after_model.positions
    assert ahead_model.horizons == after_model.horizons


def _chained(batcher: Batcher, batches: list[Batch]) -> tuple[list[BatchReply], int]:
    """As the writer's loop does it for batches that each wait in the pipe: every one decided
    while the previous one is open; the replies, and how many were decided ahead."""
    replies: list[BatchReply] = []
    decided_ahead = 0
    opened = batcher.open(*batches[0])
    for following in [*batches[1:], None]:
        if not isinstance(opened, Opened):
            replies.append(opened)
            if following is not None:
                opened = batcher.open(*following)
            continue
        ahead = batcher.decide_ahead(*following, after=opened) if following is not None else None
        settled = batcher.settle(opened)
        produced = batcher.open_ahead(ahead) if ahead is not None else None
        replies.append(batcher.reply(settled))
        if following is not None:
            decided_ahead += ahead is not None
            opened = produced or batcher.open(*following)
    if isinstance(opened, Opened) and len(replies) < len(batches):
        replies.append(batcher.close(opened))
    return replies, decided_ahead


@settings(max_examples=200, deadline=None)
@given(chain=st.lists(batches(), min_size=3, max_size=6))
def test_a_chain_of_batches_each_decided_ahead_answers_as_one_after_the_other(
    chain: list[Batch],
) -> None:
    (after, after_store, after_model), (ahead, ahead_store, ahead_model) = _ledger(), _ledger()
    expected = [after.commit(*batch) for batch in chain]
    replies, _ = _chained(ahead, chain)
    assert replies == expected
    assert ahead_store.log == after_store.log
    assert ahead_model.accounts == after_model.accounts


def test_a_batch_waiting_behind_an_open_transaction_is_decided_ahead() -> None:
    batcher, store, model = _ledger()
    encoded = store.encoded
    first = [pack_command(Deposit("d1", "a", "1.00"))]
    # Needs the first batch's deposit: decided against its pending state, it is taken.
    second = [pack_command(Withdraw("w2", "a", "11.00"))]
    *_, decided_ahead = _pipelined(batcher, (first, []), (second, []))
    assert decided_ahead
    assert model.accounts["a"].balance == 0
    # Encoded while the first committed, and not again when produced.
    assert store.encoded - encoded == 2


def test_a_batch_retrying_a_command_of_the_open_transaction_waits_for_its_commit() -> None:
    batcher, store, _ = _ledger()
    first = [pack_command(Deposit("d1", "a", "1.00"))]
    first_reply, second_reply, decided_ahead = _pipelined(batcher, (first, []), (first, []))
    assert not decided_ahead
    assert second_reply[2] == first_reply[2]  # the original's answer again
    assert store.transactions == 2 + 1  # funding a and b, then d1 once


def test_a_retry_decided_ahead_is_decided_again_when_the_fold_before_it_forgot() -> None:
    original = Deposit(new_command_id(), "a", "1.00")
    none: list[AtomicSpan] = []
    first = ([pack_command(Deposit(new_command_id(), "a", "1.00")) for _ in range(6)], none)
    retry = ([pack_command(original)], none)
    replies = []
    for pipelined in (False, True):
        batcher, _, model = _ledger(3)
        batcher.commit([pack_command(original)])
        if pipelined:
            *answers, decided_ahead = _pipelined(batcher, first, retry)
            assert decided_ahead
        else:
            answers = [batcher.commit(*first), batcher.commit(*retry)]
            assert model.outcome(original.command_id) is None  # forgotten by the first's fold
        replies.append(answers)
    assert replies[0] == replies[1]


def test_a_batch_decided_ahead_stands_when_the_fold_before_it_forgot_other_commands() -> None:
    batcher, _, model = _ledger(3)
    now_ms = int(NOW.timestamp() * 1000)
    old = [pack_command(Deposit(new_command_id(now_ms - 60_000), "a", "1.00")) for _ in range(6)]
    batcher.commit(old)
    assert model.horizons  # the window of 3 forgot some of them
    first = [pack_command(Deposit(new_command_id(now_ms), "a", "1.00")) for _ in range(6)]
    # Made after every command the folds forget (the first's own, at a window of 1 each).
    second = [pack_command(Deposit(new_command_id(now_ms + 1), "b", "1.00"))]
    opened = batcher.open(first, [])
    assert isinstance(opened, Opened)
    ahead = batcher.decide_ahead(second, [], after=opened)
    assert ahead is not None
    forgets = model.forgets
    batcher.close(opened)
    assert model.forgets > forgets
    # Newer than every horizon and not answered from memory: nothing it read was forgotten.
    assert batcher.open_ahead(ahead) is not None
