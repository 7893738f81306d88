"""Snapshots written on a thread of their own, so that batches do not wait for them.

Writing a snapshot (encoding, then a transaction of a few megabytes) takes long enough that
every command arriving meanwhile would wait for it (docs/performance.md, "Next levers for
throughput", item 1). So the writer only captures the snapshot between two batches (the outcome
entries appended since the last capture with their answers, the growing chunks' earlier pieces,
and the immutable accounts changed since: a cost proportional to what changed,
captured_outcomes.py); joining the pieces, encoding and the transaction run on this thread,
through the snapshot producer, while batches go on. At most one snapshot is in flight; a clean
stop waits for it and then writes the final one itself.
"""

from __future__ import annotations

import logging
from concurrent.futures import Future, ThreadPoolExecutor

from command_server.event_store import AppendFailed, Fenced
from command_server.snapshots import Capture, Snapshots
from command_server.write_model import WriteModel

log = logging.getLogger(__name__)


class BackgroundSnapshots:
    def __init__(self, snapshots: Snapshots) -> None:
        self._snapshots = snapshots
        self._thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="snapshots")
        self._in_flight: Future[tuple[Capture, int]] | None = None
        self._fenced = False

    def note(self, events: int) -> None:
        """`events` more were folded into the model."""
        self._snapshots.note(events)

    @property
    def writing(self) -> bool:
        """Whether a snapshot is being written (one that has finished is settled first)."""
        self._settle(wait=False)
        return self._in_flight is not None

    @property
    def due(self) -> bool:
        return not self.writing and not self._fenced and self._snapshots.due

    def start(self, model: WriteModel) -> None:
        """Capture a snapshot of `model` now (between batches) and write it in the background."""
        capture = self._snapshots.capture(model)
        if capture is not None:
            self._in_flight = self._thread.submit(self._publish, capture)

    def write_final(self, model: WriteModel) -> None:
        """At a clean stop: finish the snapshot in flight, then write one of everything, so that
        the next start replays nothing."""
        self._settle(wait=True)
        if self._fenced:
            return
        try:
            self._snapshots.write(model)
        except (AppendFailed, Fenced) as exc:
            log.warning("final snapshot not written; the next start replays more: %s", exc)

    def close(self) -> None:
        self._settle(wait=True)
        self._thread.shutdown()
        self._snapshots.close()

    def _publish(self, capture: Capture) -> tuple[Capture, int]:
        return capture, self._snapshots.publish(capture)

    def _settle(self, wait: bool) -> None:
        in_flight = self._in_flight
        if in_flight is None or not (wait or in_flight.done()):
            return
        self._in_flight = None
        try:
            self._snapshots.recorded(*in_flight.result())
        except Fenced as exc:
            # Another instance took the shard over; the next batch finds out for itself.
            self._fenced = True
            log.warning("snapshots stop: %s", exc)
        except AppendFailed as exc:
            # A snapshot only saves time at the next start; the log still has everything.
            log.warning("snapshot not written, retrying after more events: %s", exc)
        except Exception:
            log.exception("snapshot not written, retrying after more events")
