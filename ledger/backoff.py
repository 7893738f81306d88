"""How long to wait before trying again: exponential back-off with full jitter.

Every retry loop of the Ledger (a reconnecting listener, a supervisor restarting a worker, a
client resending a command) waits with one of these. The ceiling doubles from `first` up to
`cap` at every failure; with jitter (the default) the wait is drawn uniformly between `floor`
and the ceiling, so that many clients failing together do not retry in lock-step.
"""

from __future__ import annotations

import random


class Backoff:
    """The waits of one retry loop; `reset()` after a success starts again from `first`."""

    def __init__(
        self,
        first: float,
        cap: float,
        *,
        floor: float = 0.0,
        jitter: bool = True,
        rng: random.Random | None = None,
    ) -> None:
        if not 0 <= floor <= first <= cap:
            raise ValueError(f"want 0 <= floor <= first <= cap, got {floor}, {first}, {cap}")
        self._first = first
        self._cap = cap
        self._floor = floor
        self._jitter = jitter
        self._uniform = (rng or random.Random()).uniform
        self.ceiling = first
        """The longest the next wait may be."""

    def next(self) -> float:
        """The wait before the next attempt, in seconds; the ceiling then doubles (to `cap`)."""
        ceiling = self.ceiling
        self.ceiling = min(ceiling * 2, self._cap)
        return self._uniform(self._floor, ceiling) if self._jitter else ceiling

    def reset(self) -> None:
        self.ceiling = self._first
