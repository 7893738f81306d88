"""What a Kafka transactional error means for the shard: only a real fence is a takeover."""

from __future__ import annotations

import pytest
from confluent_kafka import KafkaError, KafkaException

from command_server.transactions import (
    AppendFailed,
    AppendUnsettled,
    ErrorKind,
    Fenced,
    abort,
    classify,
)


@pytest.mark.parametrize(
    "code", [KafkaError._FENCED, KafkaError.PRODUCER_FENCED, KafkaError.INVALID_PRODUCER_EPOCH]
)
def test_a_fence_is_a_takeover_whether_or_not_librdkafka_calls_it_fatal(code: int) -> None:
    assert classify(KafkaError(code, fatal=True)) is ErrorKind.FENCE
    assert classify(KafkaError(code)) is ErrorKind.FENCE


def test_an_abortable_error_is_aborted() -> None:
    too_large = KafkaError(KafkaError.MSG_SIZE_TOO_LARGE, txn_requires_abort=True)

    assert classify(too_large) is ErrorKind.ABORTABLE


@pytest.mark.parametrize(
    "code",
    [
        KafkaError._MSG_TIMED_OUT,
        KafkaError._TIMED_OUT,
        KafkaError._TIMED_OUT_QUEUE,
        KafkaError.REQUEST_TIMED_OUT,
    ],
)
def test_a_timed_out_transaction_is_not_aborted_but_its_producer_replaced(code: int) -> None:
    """A timed-out record may still be in flight, and the abort would wait for a coordinator
    that may be on the broker that died: the replacement's epoch bump settles it instead."""
    assert classify(KafkaError(code, txn_requires_abort=True)) is ErrorKind.REINITIALISE


@pytest.mark.parametrize(
    "error",
    [
        # What an abort answers after a broker crash: not a fence.
        KafkaError(KafkaError.INVALID_TXN_STATE),
        KafkaError(KafkaError._STATE),
        # Fatal, but not a fence: the producer is replaced, the shard stays ours.
        KafkaError(KafkaError.OUT_OF_ORDER_SEQUENCE_NUMBER, fatal=True),
        KafkaError(KafkaError._TIMED_OUT, fatal=True, txn_requires_abort=True),
        # A commit that kept timing out: its fate is the coordinator's.
        KafkaError(KafkaError._TIMED_OUT, retriable=True),
        KafkaError(KafkaError._TRANSPORT),
    ],
)
def test_any_other_failure_replaces_the_producer(error: KafkaError) -> None:
    assert classify(error) is ErrorKind.REINITIALISE


class AbortingProducer:
    """A producer whose abort raises `error`, or succeeds when it is None."""

    def __init__(self, error: KafkaError | None) -> None:
        self.error = error
        self.timeouts: list[float] = []

    def abort_transaction(self, timeout: float) -> None:
        self.timeouts.append(timeout)
        if self.error is not None:
            raise KafkaException(self.error)


FAILURE = KafkaError(KafkaError._MSG_TIMED_OUT, txn_requires_abort=True)


def test_a_successful_abort_means_nothing_reached_the_log() -> None:
    producer = AbortingProducer(None)

    with pytest.raises(AppendFailed) as info:
        abort(producer, FAILURE)  # type: ignore[arg-type]

    assert not isinstance(info.value, AppendUnsettled)
    assert len(producer.timeouts) == 1
    assert producer.timeouts[0] > 0, "aborts are bounded"


def test_an_abort_failing_with_invalid_txn_state_is_unsettled_not_a_takeover() -> None:
    with pytest.raises(AppendUnsettled, match="its abort too"):
        abort(AbortingProducer(KafkaError(KafkaError.INVALID_TXN_STATE)), FAILURE)  # type: ignore[arg-type]


def test_an_abort_failing_with_a_fence_is_a_takeover() -> None:
    with pytest.raises(Fenced):
        abort(AbortingProducer(KafkaError(KafkaError.PRODUCER_FENCED)), FAILURE)  # type: ignore[arg-type]
