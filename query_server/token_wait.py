"""Read-your-writes: hold a query until the read model covers the caller's consistency token."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from ledger.consistency import ConsistencyToken
from query_server.checkpoints import Checkpoints
from query_server.errors import NotCovered

# Give up this much before the caller's deadline so that the caller gets our explanation rather
# than its own bare DEADLINE_EXCEEDED.
_MARGIN_SECONDS = 0.05
# How long a wait trusts the LISTEN connection before it also asks the table once.
_TRUST_NOTIFY_SECONDS = 1.0


class TokenWaiter:
    """Waits on the shared `Checkpoints` (woken by NOTIFY), bounded by each call's deadline."""

    def __init__(
        self,
        checkpoints: Checkpoints,
        read_checkpoints: Callable[[], Awaitable[Mapping[int, int]]],
        default_wait_seconds: float,
        trust_notify_seconds: float = _TRUST_NOTIFY_SECONDS,
    ) -> None:
        self._checkpoints = checkpoints
        self._read_checkpoints = read_checkpoints
        self._default_wait = default_wait_seconds
        self._trust_notify = trust_notify_seconds

    def budget(self, time_remaining: float | None) -> float:
        """How long a call may wait, given its remaining time (None: the call has no deadline)."""
        if time_remaining is None:
            return self._default_wait
        return max(0.0, time_remaining - min(_MARGIN_SECONDS, time_remaining / 10))

    async def wait(self, token: ConsistencyToken | None, time_remaining: float | None) -> None:
        """Return once `token` is covered; NotCovered if that takes longer than the budget."""
        if token is None or token.covered_by(self._checkpoints.known):
            return
        budget = self.budget(time_remaining)
        future = self._checkpoints.register(token)
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
            raise NotCovered(self._explain(token, budget)) from None
        finally:
            self._checkpoints.discard(future)

    def _explain(self, token: ConsistencyToken, budget: float) -> str:
        known = self._checkpoints.known
        behind = "; ".join(
            f"partition {partition}: needs offset {offset}, applied "
            + (f"up to {known[partition]}" if known.get(partition, -1) >= 0 else "nothing yet")
            for partition, offset in token.positions.items()
            if known.get(partition, -1) < offset
        )
        return (
            f"the read model did not reach the consistency token within {budget:.3g}s "
            f"({behind}); the projector may be behind or stopped: retry with a longer deadline"
        )
