"""A plain-text progress line for long replays: done/total, rate and ETA, on stderr."""

from __future__ import annotations

import sys
import time
from typing import TextIO

_INTERVAL = 0.5
_INTERVAL_NOT_TTY = 5.0


class Progress:
    def __init__(self, what: str, total: int, stream: TextIO | None = None) -> None:
        self._what = what
        self._total = total
        self._stream = stream or sys.stderr
        # A terminal gets one line redrawn in place; a log file gets a line now and then.
        self._tty = self._stream.isatty()
        self._interval = _INTERVAL if self._tty else _INTERVAL_NOT_TTY
        self._started = time.monotonic()
        self._shown_at = 0.0

    def update(self, done: int, *, final: bool = False) -> None:
        now = time.monotonic()
        if not final and now - self._shown_at < self._interval:
            return
        self._shown_at = now
        elapsed = max(now - self._started, 1e-9)
        rate = done / elapsed
        percent = 100.0 * done / self._total if self._total else 100.0
        eta = (self._total - done) / rate if rate > 0 else float("inf")
        line = (
            f"{self._what}: {done:,}/{self._total:,} records ({percent:5.1f}%) "
            f"{rate:,.0f}/s " + ("done" if final else f"ETA {_duration(eta)}")
        )
        if self._tty:
            self._stream.write(f"\r{line}\033[K" + ("\n" if final else ""))
        else:
            self._stream.write(line + "\n")
        self._stream.flush()


def _duration(seconds: float) -> str:
    if seconds == float("inf"):
        return "?"
    minutes, secs = divmod(int(seconds + 0.5), 60)
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"
