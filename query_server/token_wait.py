"""Read-your-writes: hold a query until the read model covers the caller's consistency token."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from ledger.consistency import ConsistencyToken
from query_server.checkpoints import Checkpoints
from query_server.errors import NotCovered, ResourceExhausted

# Give up this much before the caller's deadline so that the caller gets our explanation rather
# than its own bare DEADLINE_EXCEEDED.
_MARGIN_SECONDS = 0.05
# How long a wait trusts the LISTEN connection before it also asks the table once.
_TRUST_NOTIFY_SECONDS = 1.0
_CALL_DEADLINE = "the call's deadline"


class TokenWaiter:
    """Waits on the shared `Checkpoints` (woken by NOTIFY), bounded by each call's deadline and
    by the server's cap, with at most `max_waiting` calls waiting at once."""

    def __init__(
        self,
        checkpoints: Checkpoints,
        read_checkpoints: Callable[[], Awaitable[Mapping[int, int]]],
        default_wait_seconds: float,
        trust_notify_seconds: float = _TRUST_NOTIFY_SECONDS,
        *,
        max_wait_seconds: float = 30.0,
        max_waiting: int = 1000,
    ) -> None:
        self._checkpoints = checkpoints
        self._read_checkpoints = read_checkpoints
        self._default_wait = min(default_wait_seconds, max_wait_seconds)
        self._trust_notify = trust_notify_seconds
        self._max_wait = max_wait_seconds
        self._max_waiting = max_waiting
        self._waiting = 0

    def budget(self, time_remaining: float | None) -> float:
        """How long a call may wait, given its remaining time (None: the call has no deadline)."""
        return self._budget(time_remaining)[0]

    def _budget(self, time_remaining: float | None) -> tuple[float, str]:
        """The budget, and what set it (for the message of a wait that runs out)."""
        if time_remaining is None:
            return self._default_wait, (
                "the server's wait for calls without a deadline "
                "(LEDGER_QUERY_DEFAULT_WAIT_SECONDS, at most LEDGER_QUERY_MAX_WAIT_SECONDS)"
            )
        deadline = max(0.0, time_remaining - min(_MARGIN_SECONDS, time_remaining / 10))
        if deadline > self._max_wait:
            return self._max_wait, (
                "the server's cap on token waits (LEDGER_QUERY_MAX_WAIT_SECONDS), shorter than "
                "the call's deadline"
            )
        return deadline, _CALL_DEADLINE

    async def wait(self, token: ConsistencyToken | None, time_remaining: float | None) -> None:
        """Return once `token` is covered; NotCovered if that takes longer than the budget,
        ResourceExhausted if `max_waiting` calls wait already."""
        if token is None or token.covered_by(self._checkpoints.known):
            return
        if self._waiting >= self._max_waiting:
            raise ResourceExhausted(
                f"too many queries waiting for consistency tokens ({self._waiting}, the limit "
                "LEDGER_QUERY_MAX_WAITING_CALLS); retry later, or without a token if an older "
                "answer will do"
            )
        budget, limited_by = self._budget(time_remaining)
        future = self._checkpoints.register(token)
        self._waiting += 1
        try:
            async with asyncio.timeout(budget):
                # While the LISTEN connection is up, a checkpoint committed before we registered
                # has reached `known` already or will with its NOTIFY. Without it, NOTIFYs may
                # have been lost: the table has their effect. It is asked too when a NOTIFY is
                # slow to come: a half-open connection is only found out by its next ping.
                if self._checkpoints.listening:
                    await asyncio.wait({future}, timeout=self._trust_notify)
                if not future.done():
                    self._checkpoints.advance(await self._read_checkpoints())
                await future
        except TimeoutError:
            raise NotCovered(self._explain(token, budget, limited_by)) from None
        finally:
            self._waiting -= 1
            self._checkpoints.discard(future)

    def _explain(self, token: ConsistencyToken, budget: float, limited_by: str) -> str:
        known = self._checkpoints.known
        behind = "; ".join(
            f"partition {partition}: needs offset {offset}, applied "
            + (f"up to {known[partition]}" if known.get(partition, -1) >= 0 else "nothing yet")
            for partition, offset in token.positions.items()
            if known.get(partition, -1) < offset
        )
        return (
            f"the read model did not reach the consistency token within {budget:.3g}s, "
            f"{limited_by} ({behind}); the projector may be behind or stopped: retry later"
            + (" with a longer deadline" if limited_by == _CALL_DEADLINE else "")
        )
