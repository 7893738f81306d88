"""The client without a server: command ids, amounts, tokens, and the retry policy on a fake
channel with a fake clock and deterministic jitter."""

from __future__ import annotations

import random
import re
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import grpc
import pytest

from ledger_client import (
    LedgerClient,
    LedgerError,
    Retrier,
    RetryPolicy,
    TransferState,
    format_amount,
)
from ledger_client.command_ids import new_command_id
from ledger_client.credentials import TokenFile
from ledger_client.tokens import merge_tokens
from ledger_client.v1 import commands_pb2 as cpb
from ledger_client.v1 import queries_pb2 as qpb

CANONICAL_UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-7[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}")


def test_command_ids_are_canonical_uuidv7s_stamped_with_now() -> None:
    before = time.time_ns() // 1_000_000
    ids = [new_command_id() for _ in range(1000)]
    after = time.time_ns() // 1_000_000
    assert len(set(ids)) == len(ids)
    for command_id in ids:
        assert CANONICAL_UUID.fullmatch(command_id), command_id
        parsed = uuid.UUID(command_id)
        assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
        assert before <= parsed.int >> 80 <= after


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (Decimal("12.50"), "12.5"),
        (Decimal("1500.00"), "1500"),
        (Decimal("1E+3"), "1000"),
        (Decimal("0.001"), "0.001"),
        (Decimal("1.005"), "1.005"),  # never rounded: the server refuses too many places
        (Decimal("12345678901234567.89"), "12345678901234567.89"),
        (7, "7"),
        ("0.10", "0.1"),
    ],
)
def test_amounts_are_formatted_exactly(amount: Any, text: str) -> None:
    assert format_amount(amount) == text


@pytest.mark.parametrize("amount", [0.1, True, None])
def test_floats_and_other_types_are_refused(amount: Any) -> None:
    with pytest.raises(TypeError):
        format_amount(amount)


@pytest.mark.parametrize(
    "amount", [Decimal(0), Decimal("-1"), Decimal("-0"), Decimal("NaN"), Decimal("Infinity"), "x"]
)
def test_amounts_that_are_not_positive_numbers_are_refused(amount: Any) -> None:
    with pytest.raises(ValueError, match="amount"):
        format_amount(amount)


def _token(text: str) -> str:
    import base64

    return "v1." + base64.urlsafe_b64encode(text.encode()).decode().rstrip("=")


def test_merged_tokens_keep_the_latest_offset_of_every_partition() -> None:
    merged = merge_tokens(_token("0:5,3:9"), _token("3:4,5:1"))
    assert merged == _token("0:5,3:9,5:1")
    assert merge_tokens("", _token("1:2")) == _token("1:2")
    # A format this client does not know: the newer token as it is.
    assert merge_tokens(_token("1:2"), "v2.opaque") == "v2.opaque"


class FakeRpcError(grpc.RpcError, grpc.Call):
    """What a gRPC stub raises: an RpcError that is also the call, with status and trailers."""

    def __init__(self, code: grpc.StatusCode, trailers: Any = ()) -> None:
        self._code = code
        self._trailers = trailers

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return f"fake {self._code.name}"

    def trailing_metadata(self) -> Any:
        return self._trailers

    def initial_metadata(self) -> Any:
        return ()

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> float:
        return 0.0

    def cancel(self) -> bool:
        return False

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False


class FakeTime:
    """A clock that moves only when the code under test sleeps (or an attempt takes time)."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


class FakeChannel:
    """A channel whose unary calls answer from a script: an exception to raise or a reply."""

    def __init__(self, script: list[Exception | Any], time: FakeTime, attempt_cost: float) -> None:
        self.script = script
        self.requests: list[Any] = []
        self.timeouts: list[float] = []
        self._time = time
        self._cost = attempt_cost

    def unary_unary(self, method: str, *args: Any, **kwargs: Any) -> Callable[..., Any]:
        def call(request: Any, timeout: float, **_: Any) -> Any:
            self.requests.append(request)
            self.timeouts.append(timeout)
            self._time.now += min(self._cost, timeout)
            outcome = self.script.pop(0)
            if isinstance(outcome, Exception):
                raise outcome
            return outcome

        return call

    def unary_stream(self, *args: Any, **kwargs: Any) -> Any:
        return None

    def close(self) -> None:
        pass


class HalfJitter(random.Random):
    """Deterministic 'full jitter': always halfway between 0 and the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return (a + b) / 2


def _client(
    script: list[Exception | Any], policy: RetryPolicy, attempt_cost: float = 0.0
) -> tuple[LedgerClient, FakeChannel, FakeTime, list[grpc.StatusCode]]:
    time_ = FakeTime()
    seen: list[grpc.StatusCode] = []
    retrier = Retrier(
        policy,
        clock=time_.clock,
        sleep=time_.sleep,
        rng=HalfJitter(),
        on_retry=lambda code, _: seen.append(code),
    )
    channel = FakeChannel(script, time_, attempt_cost)
    return LedgerClient(channel, channel, retry=retrier), channel, time_, seen  # type: ignore[arg-type]


ACCEPTED = cpb.DepositResponse(version=2, consistency_token="v1.MDo1")


def test_transient_failures_are_retried_with_the_same_command_id_and_growing_waits() -> None:
    script: list[Exception | Any] = [
        FakeRpcError(grpc.StatusCode.UNAVAILABLE),
        FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED),
        FakeRpcError(grpc.StatusCode.UNAVAILABLE),
        ACCEPTED,
    ]
    policy = RetryPolicy(first_backoff=0.1, max_backoff=0.3)
    client, channel, time_, seen = _client(script, policy)
    result = client.deposit("alice", Decimal("12.50"))
    assert (result.version, result.consistency_token) == (2, "v1.MDo1")
    assert len(channel.requests) == 4
    assert {request.command_id for request in channel.requests} == {result.command_id}
    assert {request.amount for request in channel.requests} == {"12.5"}
    assert seen == [
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNAVAILABLE,
    ]
    # Full jitter (here always half) of a ceiling doubling from 0.1 up to 0.3.
    assert time_.sleeps == pytest.approx([0.05, 0.1, 0.15])


def test_a_full_queue_is_retried_after_the_servers_pushback() -> None:
    full = FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, (("grpc-retry-pushback-ms", "250"),))
    client, channel, time_, _ = _client([full, ACCEPTED], RetryPolicy())
    client.deposit("alice", 5)
    assert time_.sleeps == [0.25]
    assert channel.requests[0].command_id == channel.requests[1].command_id


@pytest.mark.parametrize(
    "error",
    [
        FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED),  # no pushback: e.g. a message too large
        FakeRpcError(grpc.StatusCode.FAILED_PRECONDITION),  # e.g. "too old to deduplicate"
        FakeRpcError(grpc.StatusCode.INVALID_ARGUMENT),
        FakeRpcError(grpc.StatusCode.ABORTED),
        FakeRpcError(grpc.StatusCode.UNAUTHENTICATED),
    ],
)
def test_other_failures_are_final(error: FakeRpcError) -> None:
    client, channel, time_, _ = _client([error, ACCEPTED], RetryPolicy())
    with pytest.raises(LedgerError) as raised:
        client.deposit("alice", 5)
    assert raised.value.code == error.code()
    assert (raised.value.attempts, len(channel.requests), time_.sleeps) == (1, 1, [])
    assert raised.value.command_id == channel.requests[0].command_id


def test_retries_stop_at_the_overall_deadline_and_attempts_fit_within_it() -> None:
    timeouts: list[Exception | Any] = [
        FakeRpcError(grpc.StatusCode.DEADLINE_EXCEEDED) for _ in range(100)
    ]
    policy = RetryPolicy(timeout=5.0, attempt_timeout=2.0, first_backoff=0.5, max_backoff=0.5)
    client, channel, time_, _ = _client(timeouts, policy, attempt_cost=2.0)
    with pytest.raises(LedgerError) as raised:
        client.deposit("alice", 5)
    assert raised.value.code == grpc.StatusCode.DEADLINE_EXCEEDED
    # 2 s, wait 0.25, 2 s, wait 0.25, then the 0.5 s left: each attempt within what remains.
    assert channel.timeouts == pytest.approx([2.0, 2.0, 0.5])
    assert time_.now <= 5.0
    assert len({request.command_id for request in channel.requests}) == 1


def test_a_pushback_longer_than_the_time_left_fails_at_once() -> None:
    full = FakeRpcError(grpc.StatusCode.RESOURCE_EXHAUSTED, (("grpc-retry-pushback-ms", "9000"),))
    client, _, time_, _ = _client([full, ACCEPTED], RetryPolicy(timeout=5.0))
    with pytest.raises(LedgerError):
        client.deposit("alice", 5)
    assert time_.sleeps == []


def test_every_command_gets_its_own_id() -> None:
    replies: list[Exception | Any] = [
        ACCEPTED,
        ACCEPTED,
        cpb.OpenAccountResponse(version=1, consistency_token="t"),
    ]
    client, channel, _, _ = _client(replies, RetryPolicy())
    client.deposit("alice", 1)
    client.deposit("alice", 1)
    client.open_account("bob", "EUR")
    ids = [request.command_id for request in channel.requests]
    assert len(set(ids)) == 3
    assert all(CANONICAL_UUID.fullmatch(command_id) for command_id in ids)


def test_a_token_file_is_read_again_when_it_changes(tmp_path: Path) -> None:
    path = tmp_path / "writer.token"
    path.write_text("first\n")
    plugin = TokenFile(path)
    sent: list[Any] = []
    plugin(None, lambda metadata, error: sent.append((metadata, error)))  # type: ignore[arg-type]
    path.write_text("second-and-longer\n")
    plugin(None, lambda metadata, error: sent.append((metadata, error)))  # type: ignore[arg-type]
    path.unlink()
    plugin(None, lambda metadata, error: sent.append((metadata, error)))  # type: ignore[arg-type]
    assert sent[:2] == [
        ((("authorization", "Bearer first"),), None),
        ((("authorization", "Bearer second-and-longer"),), None),
    ]
    assert sent[2][0] == ()
    assert isinstance(sent[2][1], FileNotFoundError)


def test_a_sessions_reads_of_many_accounts_wait_for_its_writes_and_are_typed() -> None:
    fresh = qpb.Freshness(consistency_token="v1.MDo5")
    replies: list[Exception | Any] = [
        ACCEPTED,
        qpb.GetAccountsResponse(missing=["bob"], freshness=fresh),
        qpb.ListBalancesAtResponse(
            balances=[
                qpb.BalanceAt(
                    account_id="alice",
                    currency="EUR",
                    balance="1.50",
                    version=2,
                    status=qpb.ACCOUNT_STATUS_OPEN,
                )
            ],
            freshness=fresh,
        ),
        qpb.GetTrialBalanceResponse(
            currencies=[
                qpb.CurrencyTotals(
                    currency="EUR", total_balance="1.50", money_in="2", money_out="0.50"
                )
            ]
        ),
    ]
    client, channel, _, _ = _client(replies, RetryPolicy())
    session = client.session()
    session.deposit("alice", 1)
    assert session.get_accounts(["bob"]).missing == ["bob"]
    moment = datetime(2026, 1, 1, tzinfo=UTC)
    page = session.list_balances_at(moment, account_id_prefix="al")
    assert [(x.account_id, x.balance) for x in page.items] == [("alice", Decimal("1.50"))]
    totals = session.get_trial_balance(moment).currencies
    assert (totals[0].money_in, totals[0].money_out) == (Decimal(2), Decimal("0.50"))
    tokens = [request.consistency_token for request in channel.requests[1:]]
    assert tokens == ["v1.MDo1", "v1.MDo5", "v1.MDo5"]
    assert channel.requests[2].account_id_prefix == "al"


def test_a_transfer_reads_back_typed_with_its_state_and_steps() -> None:
    sent = datetime(2026, 1, 1, tzinfo=UTC)
    reply = qpb.GetTransferResponse(
        transfer=qpb.Transfer(
            transfer_id="t-1",
            from_account_id="alice",
            to_account_id="bob",
            amount="1.50",
            currency="EUR",
            state=qpb.TRANSFER_STATE_REFUNDED,
            cross_shard=True,
            refund_reason="account 'bob' is closed",
        ),
        freshness=qpb.Freshness(consistency_token="v1.MDo5"),
    )
    reply.transfer.sent_at.FromDatetime(sent)
    reply.transfer.refunded_at.FromDatetime(sent)
    client, channel, _, _ = _client([reply], RetryPolicy())
    transfer = client.get_transfer("t-1", consistency_token="v1.MDo1")
    assert transfer.state is TransferState.REFUNDED
    assert (transfer.amount, transfer.sent_at, transfer.credited_at) == (
        Decimal("1.50"),
        sent,
        None,
    )
    assert transfer.refund_reason == "account 'bob' is closed"
    assert channel.requests[0].transfer_id == "t-1"
    assert channel.requests[0].consistency_token == "v1.MDo1"
