"""The writer's cheaper ways of answering a batch held to what they replaced: delivery reports
mapped to offsets through one callback, a success packed as plain ints, an outcome's version
found by type, and the batch's verdicts taken from the fold rather than looked up again."""

from __future__ import annotations

import random
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from command_server.shards import Shard
from command_server.transactions import Deliveries
from command_server.write_model import Outcome, WriteModel, source_version
from command_server.writer.batcher import Batcher
from command_server.writer.protocol import Ack, pack_verdict, unpack_verdict
from ledger.consistency import encode_positions
from ledger.domain.commands import Deposit
from ledger.events.records import TransferCredited, TransferRefunded
from tests.unit.fake_event_store import FakeEventStore
from tests.unit.test_batcher import NOW, commit, funded
from tests.unit.test_codec import SAMPLES


class _Report:
    def __init__(self, partition: int, offset: int) -> None:
        self._partition, self._offset = partition, offset

    def partition(self) -> int:
        return self._partition

    def offset(self) -> int:
        return self._offset


@settings(max_examples=300)
@given(st.lists(st.integers(0, 5), max_size=60), st.randoms(use_true_random=False))
def test_each_record_gets_its_offset_whatever_order_the_reports_arrive_in(
    partitions: list[int], rng: random.Random
) -> None:
    # What the log holds: per partition, the records in produce order from some offset on.
    ends = {p: rng.randrange(1000) for p in set(partitions)}
    expected = []
    for partition in partitions:
        expected.append(ends[partition])
        ends[partition] += 1
    reports = [_Report(p, o) for p, o in zip(partitions, expected, strict=True)]
    rng.shuffle(reports)
    deliveries = Deliveries()
    for report in reports:
        deliveries.report(None, report)
    assert deliveries.offsets(partitions) == expected
    assert deliveries.failures == []


def test_a_missing_or_failed_report_leaves_its_record_without_an_offset() -> None:
    deliveries = Deliveries()
    deliveries.report(None, _Report(1, 7))
    failure: Any = "a failure"
    deliveries.report(failure, _Report(0, -1))
    assert deliveries.offsets([1, 0, 1]) == [7, -1, -1]
    assert deliveries.failures == [failure]


@given(
    version=st.integers(0, 2**40),
    positions=st.dictionaries(st.integers(0, 2**31 - 1), st.integers(0, 2**63 - 1), max_size=4),
)
def test_a_success_reaches_the_grpc_side_as_it_always_did(
    version: int, positions: dict[int, int]
) -> None:
    outcome = Outcome("f" * 64, version, dict(positions))
    token = encode_positions(positions)
    assert unpack_verdict(pack_verdict(outcome)) == Ack(version, token, tuple(positions.items()))


def test_every_event_type_counts_the_version_it_always_did() -> None:
    for event in SAMPLES:
        credit = isinstance(event, TransferCredited | TransferRefunded)
        assert source_version(event) == (0 if credit else event.version)


def _verdicts_as_the_model_says(batcher: Batcher, model: WriteModel) -> None:
    deposits = [Deposit(f"d-{n}", f"acc-{n % 3}", "1.00") for n in range(40)]
    answers = commit(batcher, *deposits)
    for deposit, answer in zip(deposits, answers, strict=True):
        outcome = model.outcome(deposit.command_id)
        if outcome is None:
            # Forgotten by its own batch's fold, but applied: answered as the fold made it.
            assert isinstance(answer, Ack)
        else:
            assert answer == Ack(outcome.version, outcome.token, tuple(outcome.positions.items()))


def test_a_batch_answers_what_the_model_remembers() -> None:
    shard = Shard(index=0, count=1, partitions=4)
    model = WriteModel(dedupe_window=1000, partitions=shard.owned_partitions)
    batcher = Batcher(model, FakeEventStore(), shard, clock=lambda: NOW)
    for n in range(3):
        funded(batcher, f"acc-{n}", "5.00")
    forgets = model.forgets
    _verdicts_as_the_model_says(batcher, model)
    assert model.forgets == forgets  # the answers came straight from the fold


def test_a_batch_whose_fold_forgets_answers_what_the_model_still_remembers() -> None:
    shard = Shard(index=0, count=1, partitions=4)
    model = WriteModel(dedupe_window=4, partitions=shard.owned_partitions, chunk_entries=2)
    batcher = Batcher(model, FakeEventStore(), shard, clock=lambda: NOW)
    for n in range(3):
        funded(batcher, f"acc-{n}", "5.00")
    forgets = model.forgets
    _verdicts_as_the_model_says(batcher, model)
    assert model.forgets > forgets  # the answers were looked up again, or taken from the fold
