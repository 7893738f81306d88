"""The writer's loop over a real pipe: batches answered in order, the next one decided while
the previous one's transaction is open, and the stop message obeyed wherever it arrives."""

from __future__ import annotations

import multiprocessing
from typing import Any

from command_server.write_model import WriteModel
from command_server.writer.batcher import Batcher, Opened
from command_server.writer.process import _Loop
from command_server.writer.protocol import (
    PROBE,
    Ack,
    AtomicSpan,
    PackedCommand,
    pack_command,
    unpack_verdict,
)
from ledger.domain.commands import Deposit, Withdraw
from tests.unit.fake_event_store import FakeEventStore
from tests.unit.test_batcher import NOW, SHARD, funded


class _Store(FakeEventStore):
    def prepare(self) -> None:
        pass


class _Counting(Batcher):
    """Counts the batches decided ahead of their turn."""

    ahead = 0

    def decide_ahead(self, packed: list[PackedCommand], atomic: Any, after: Opened) -> Any:
        decided = super().decide_ahead(packed, atomic, after)
        self.ahead += decided is not None
        return decided


def _run(messages: list[object]) -> tuple[list[Any], _Counting]:
    """Everything sent before the loop starts (so that each batch waits in the pipe), the
    replies read back once it has stopped."""
    model = WriteModel(dedupe_window=1000, partitions=SHARD.owned_partitions)
    store = _Store()
    batcher = _Counting(model, store, SHARD, clock=lambda: NOW)
    funded(batcher, "a", "10.00")
    ours, theirs = multiprocessing.Pipe(duplex=True)
    for message in messages:
        ours.send(message)
    _Loop(theirs, model, store, batcher, None, None, None).run()  # type: ignore[arg-type]
    replies = []
    while ours.poll():
        replies.append(ours.recv())
    return replies, batcher


def _batch(*commands: Deposit | Withdraw, atomic: list[AtomicSpan] | None = None) -> object:
    return [pack_command(c) for c in commands], atomic or []


def _answers(reply: Any) -> list[Any]:
    return [unpack_verdict(v) for v in reply[2]]


def test_each_batch_waiting_in_the_pipe_is_decided_while_the_previous_one_commits() -> None:
    replies, batcher = _run(
        [
            _batch(Deposit("d1", "a", "1.00")),
            _batch(Withdraw("w1", "a", "11.00")),  # only with d1's deposit
            _batch(Withdraw("w2", "a", "0.01")),  # refused: w1 took everything
            None,
        ]
    )
    assert batcher.ahead == 2
    assert len(replies) == 3
    first, second, third = (_answers(reply) for reply in replies)
    assert isinstance(first[0], Ack)
    assert isinstance(second[0], Ack)
    assert not isinstance(third[0], Ack)


def test_a_message_other_than_a_batch_waits_for_the_open_transaction_then_is_answered() -> None:
    replies, batcher = _run([_batch(Deposit("d1", "a", "1.00")), PROBE, None])
    assert batcher.ahead == 0
    assert len(replies) == 2
    assert isinstance(_answers(replies[0])[0], Ack)
    assert replies[1][2] == []  # the probe's reply: no verdicts


def test_the_stop_message_taken_while_a_transaction_is_open_still_stops_the_loop() -> None:
    # Were it mistaken for "nothing held", the loop would wait on the pipe for ever.
    replies, _ = _run([_batch(Deposit("d1", "a", "1.00")), None])
    assert len(replies) == 1
