"""Sending one command the way a careful client does.

Every attempt has a deadline. UNAVAILABLE, DEADLINE_EXCEEDED and broken connections (which
grpc reports as UNAVAILABLE) are retried with the same command_id after an exponential backoff
with full jitter; so are UNKNOWN, INTERNAL, CANCELLED and RESOURCE_EXHAUSTED, which a server
should not answer but which leave the outcome open just the same (the journal counts them).
Everything else is the server's final answer: a domain refusal (FAILED_PRECONDITION, NOT_FOUND,
ALREADY_EXISTS, ABORTED, INVALID_ARGUMENT) is never retried.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Protocol

import grpc

from fault_drill.journal import Attempt, CommandRecord, Journal, Mode, Result, Status
from ledger.backoff import Backoff
from ledger.v1 import commands_pb2 as cmd

RETRYABLE = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.CANCELLED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
EXPECTED_TRANSIENT = frozenset({"UNAVAILABLE", "DEADLINE_EXCEEDED"})
"""Transient codes a server under faults is expected to answer; the others are findings."""

CHANNEL_OPTIONS: tuple[tuple[str, int], ...] = (
    # grpc's default reconnect backoff grows to 120 s: a client would sit out a restarted
    # server for minutes. Real clients tune it down like this.
    ("grpc.initial_reconnect_backoff_ms", 100),
    ("grpc.min_reconnect_backoff_ms", 100),
    ("grpc.max_reconnect_backoff_ms", 1000),
)


class Reply(Protocol):
    @property
    def version(self) -> int: ...

    @property
    def consistency_token(self) -> str: ...


Call = Callable[[float], Awaitable[Reply]]
"""One attempt: sends the request with the given per-call deadline (seconds)."""


class GiveUp:
    """When clients stop retrying: never during the load, at a deadline once it is over."""

    def __init__(self) -> None:
        self._at: float | None = None

    def set(self, at_monotonic: float) -> None:
        self._at = at_monotonic

    def reached(self) -> bool:
        return self._at is not None and time.monotonic() >= self._at

    def remaining(self) -> float | None:
        return None if self._at is None else self._at - time.monotonic()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    deadline_s: float
    base_s: float
    cap_s: float


async def send(
    record: CommandRecord,
    call: Call,
    *,
    journal: Journal,
    policy: RetryPolicy,
    rng: random.Random,
    give_up: GiveUp,
    mode: Mode,
    first_deadline_s: float | None = None,
) -> Attempt | None:
    """Attempt `call` until it gets a final answer; returns that attempt (also in the record's
    journal), or None if `give_up` was reached first."""
    backoff = Backoff(policy.base_s, policy.cap_s, rng=rng)
    deadline = policy.deadline_s if first_deadline_s is None else first_deadline_s
    while True:
        started = journal.now()
        try:
            reply = await call(deadline)
        except grpc.aio.AioRpcError as error:
            code = error.code()
            result = Result.TRANSIENT if code in RETRYABLE else Result.REFUSED
            attempt = Attempt(
                started, journal.now(), result, code.name, mode, detail=error.details() or ""
            )
        else:
            attempt = Attempt(
                started,
                journal.now(),
                Result.ACK,
                "OK",
                mode,
                version=reply.version,
                token=reply.consistency_token,
                pending=getattr(reply, "status", None) == cmd.TRANSFER_STATUS_PENDING,
            )
        record.attempts.append(attempt)
        if attempt.result is not Result.TRANSIENT:
            return attempt
        if give_up.reached():
            return None
        deadline = policy.deadline_s
        pause = backoff.next()
        remaining = give_up.remaining()
        if remaining is not None:
            pause = max(0.0, min(pause, remaining))
        await asyncio.sleep(pause)


def settle(record: CommandRecord, final: Attempt | None) -> None:
    """Record the command's outcome from one of its sends (the first final answer wins)."""
    if record.status is Status.ACKNOWLEDGED:
        return
    if final is None:
        if record.status is Status.PENDING:
            record.status = Status.UNRESOLVED
        return
    if final.result is Result.ACK:
        record.status = Status.ACKNOWLEDGED
        record.version = final.version
        record.token = final.token
        record.refusal = None
        record.answered_pending = final.pending
    elif record.status is not Status.REFUSED:
        record.status = Status.REFUSED
        record.refusal = final.code
