"""Each partition's growing outcome chunk as the last snapshot captured it, extended rather than
rebuilt by the next capture.

A snapshot writes each partition's last, growing outcome chunk whole (its entries with their
commands' answers). Rebuilding it took a step per entry on the writer's main thread, between two
batches: with chunks of 10,000 entries, tens of milliseconds per snapshot whatever happened
since the last one. The columns captured last time stay right as long as none of their entries'
answers changed; then only the entries appended since are answered, their outcomes taken from
the log's column of them (a slice, not a lookup each), and the columns are joined (list, bytes
and array concatenation; new objects, so that what an earlier capture handed to the snapshot
thread never changes).

An answer already captured changes only when
- its command gets another event (a transfer's second event in a later batch, an id used again,
  a restored answer recorded again): the model lists those commands (`recorded_again`), and a
  chunk holding one of them is rebuilt;
- its command is forgotten (a transfer forgotten in its other partition), or forgotten and then
  used again: only when some partition forgot (`WriteModel.forgets` moved); the chunk's index
  entries are then compared, object for object, with those it was built from, and it is rebuilt
  if any differs. A chunk holding entries forgotten already is not kept (their id may come back).
Anything else that could hide a change (a log replaced by a restore, entries appended since and
already forgotten, another model) rebuilds every chunk. `WriteModel.chunk` is the rebuild, and a
property test holds the two equal (tests/unit/test_captured_outcomes.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from operator import is_
from typing import cast

from command_server.outcome_log import OutcomeColumns, OutcomeLog
from command_server.write_model import IndexEntry, WriteModel


@dataclass(slots=True)
class _Growing:
    """One partition's growing chunk as captured: its columns (handed out, so never changed)
    and the index entries they answer (this module's own)."""

    number: int
    columns: OutcomeColumns
    entries: list[IndexEntry | None]

    @property
    def end(self) -> int:
        return self.columns.first + len(self.columns)


class CapturedOutcomes:
    """Outcome chunks for one model's snapshots; used only on the thread that folds it."""

    def __init__(self) -> None:
        self._model: WriteModel | None = None
        self._growing: dict[int, _Growing] = {}
        self._logs: dict[int, tuple[OutcomeLog, int]] = {}
        """Per partition, the log and its end at the last capture."""
        self._forgets = 0
        self._appended_since: dict[int, int] = {}
        """Per partition whose entries from this index on were appended since the last capture
        and none forgotten since: their outcomes are the log's."""

    def begin(self, model: WriteModel) -> None:
        """A capture of `model` starts: forget the chunks whose answers may have changed."""
        again = model.recorded_again
        model.recorded_again = []
        known = model is self._model and again is not None
        self._appended_since = {}
        if known and model.forgets == self._forgets:
            self._appended_since = {
                p: end for p, (log, end) in self._logs.items() if model.logs.get(p) is log
            }
        self._growing = (
            self._unchanged(model, again) if again is not None and known and self._growing else {}
        )
        self._model = model
        self._logs = {p: (log, log.end) for p, log in model.logs.items()}
        self._forgets = model.forgets

    def chunk(self, model: WriteModel, partition: int, number: int) -> OutcomeColumns:
        """Outcome chunk `number` of `partition`, as `model.chunk` would build it now (call
        `begin` first)."""
        size = model.chunk_entries
        first = number * size
        log = model.logs[partition]
        span = log.span(first, first + size)
        growing = self._growing.get(partition)
        if (
            growing is not None
            and growing.number == number
            and growing.columns.first == span.start
            and growing.end <= span.stop
        ):
            entries = self._entries(model, partition, growing.end, span.stop)
            new = log.columns(range(growing.end, span.stop), *model.answers(entries))
            growing.columns = columns = _joined(growing.columns, new)
            growing.entries += entries
        else:
            entries = self._entries(model, partition, span.start, span.stop)
            columns = new = log.columns(span, *model.answers(entries))
            growing = _Growing(number, columns, entries)
        # A token "" answers an entry forgotten already (every other token has a position).
        if span.stop < first + size and "" not in new.tokens:
            self._growing[partition] = growing
        elif self._growing.get(partition) is growing:
            del self._growing[partition]
        return columns

    def _entries(
        self, model: WriteModel, partition: int, first: int, end: int
    ) -> list[IndexEntry | None]:
        """The index entries of entries [first, end) of `partition`'s log."""
        log = model.logs[partition]
        if first >= self._appended_since.get(partition, end + 1):
            outcomes = log.outcomes(first, end)
            if outcomes is not None:
                return cast("list[IndexEntry | None]", outcomes)
        return model.entries(log.command_ids(first, end))

    def _unchanged(self, model: WriteModel, again: list[str]) -> dict[int, _Growing]:
        """The growing chunks whose answers are still those captured."""
        for partition, log in model.logs.items():
            then, end = self._logs.get(partition, (log, 0))
            if then is not log or log.start > end:
                # Replaced by a restore, or it forgot entries appended since.
                return {}
        kept = self._growing
        if again:
            recorded = set(again)
            kept = {p: g for p, g in kept.items() if recorded.isdisjoint(g.columns.command_ids)}
        if model.forgets == self._forgets:
            return kept
        return {
            p: g
            for p, g in kept.items()
            if all(map(is_, model.entries(g.columns.command_ids), g.entries))
        }


def _joined(head: OutcomeColumns, tail: OutcomeColumns) -> OutcomeColumns:
    return OutcomeColumns(
        head.first,
        head.command_ids + tail.command_ids,
        head.fingerprints + tail.fingerprints,
        head.offsets + tail.offsets,
        head.versions + tail.versions,
        head.tokens + tail.tokens,
    )
