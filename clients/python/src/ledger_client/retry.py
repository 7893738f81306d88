"""Retrying a call within an overall deadline: exponential back-off with full jitter.

Retried (a command with the same command id, so the server applies it at most once):
- UNAVAILABLE: the server was not reachable or not ready, or the connection broke, possibly
  after the server received the call: only the same command id makes resending safe.
- DEADLINE_EXCEEDED of one attempt (each attempt gets at most `attempt_timeout` of the overall
  deadline): the answer may have been lost on the way back.
- RESOURCE_EXHAUSTED carrying the standard `grpc-retry-pushback-ms` trailer (the command queue is
  full): after exactly that many milliseconds. Without the trailer it is final: gRPC itself
  raises RESOURCE_EXHAUSTED for a message too large, which no retry mends.
Everything else is final, notably FAILED_PRECONDITION "too old to deduplicate": the server no
longer remembers the command id, so a resend could apply the command twice.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import grpc

T = TypeVar("T")

RETRIED = frozenset(
    {
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.RESOURCE_EXHAUSTED,
    }
)
PUSHBACK_TRAILER = "grpc-retry-pushback-ms"


@dataclass(frozen=True)
class RetryPolicy:
    """How long a call may take in all, and how the waits between its attempts grow."""

    timeout: float = 30.0
    """The overall deadline of a call, in seconds, over all its attempts and waits."""
    attempt_timeout: float = 10.0
    """The most one attempt may take: a lost answer costs this long, not the whole deadline."""
    first_backoff: float = 0.05
    max_backoff: float = 2.0

    def __post_init__(self) -> None:
        if not 0 < self.first_backoff <= self.max_backoff:
            raise ValueError("want 0 < first_backoff <= max_backoff")
        if self.timeout <= 0 or self.attempt_timeout <= 0:
            raise ValueError("timeouts must be positive")


class LedgerError(Exception):
    """A call that failed for good: a final status, or the deadline spent on retries."""

    def __init__(
        self, code: grpc.StatusCode, details: str, *, attempts: int, command_id: str | None
    ) -> None:
        super().__init__(f"{code.name}: {details}")
        self.code = code
        self.details = details
        self.attempts = attempts
        self.command_id = command_id
        """The id the command was sent with (every attempt used it); None for a query."""


def pushback_seconds(error: grpc.Call) -> float | None:
    """The server's `grpc-retry-pushback-ms`, in seconds; None if absent or malformed."""
    for key, value in error.trailing_metadata() or ():
        if key == PUSHBACK_TRAILER:
            text = value.decode("ascii", "replace") if isinstance(value, bytes) else value
            return int(text) / 1000 if text.isdigit() else None
    return None


class Retrier:
    """Runs calls under a `RetryPolicy`; the clock, sleep and randomness can be replaced (tests)."""

    def __init__(
        self,
        policy: RetryPolicy,
        *,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
        rng: random.Random | None = None,
        on_retry: Callable[[grpc.StatusCode, float], None] | None = None,
    ) -> None:
        self.policy = policy
        self._clock = clock
        self._sleep = sleep
        self._uniform = (rng or random.Random()).uniform
        self._on_retry = on_retry
        """Told the status and the wait before every retry (logging, metrics, tests)."""

    def call(
        self,
        attempt: Callable[[float], T],
        *,
        timeout: float | None = None,
        command_id: str | None = None,
    ) -> T:
        """`attempt(seconds)` until it returns, fails finally, or the deadline comes; it is given
        the time its attempt may take."""
        policy = self.policy
        deadline = self._clock() + (policy.timeout if timeout is None else timeout)
        ceiling = policy.first_backoff
        attempts = 0
        while True:
            attempts += 1
            remaining = deadline - self._clock()
            try:
                return attempt(min(policy.attempt_timeout, max(remaining, 0.0)))
            except grpc.RpcError as error:
                if not isinstance(error, grpc.Call):
                    raise
                code, details = error.code(), error.details() or ""
                wait = self._wait(error, code, ceiling)
                ceiling = min(ceiling * 2, policy.max_backoff)
                # No time left for another attempt after the wait: report what happened.
                if wait is None or self._clock() + wait >= deadline:
                    raise LedgerError(
                        code, details, attempts=attempts, command_id=command_id
                    ) from error
                if self._on_retry is not None:
                    self._on_retry(code, wait)
                self._sleep(wait)

    def _wait(self, error: grpc.Call, code: grpc.StatusCode, ceiling: float) -> float | None:
        """How long to wait before the next attempt; None: the failure is final."""
        if code not in RETRIED:
            return None
        if code is grpc.StatusCode.RESOURCE_EXHAUSTED:
            # The server said how long; its own figure, not jittered.
            return pushback_seconds(error)
        return self._uniform(0.0, ceiling)
