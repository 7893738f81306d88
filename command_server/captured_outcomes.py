"""Each partition's growing outcome chunk as the last snapshot captured it, extended rather than
rebuilt by the next capture.

A snapshot writes each partition's last, growing outcome chunk whole (its entries with their
commands' answers). Rebuilding it took a step per entry on the writer's main thread, between two
batches: with chunks of 10,000 entries (the default then), tens of milliseconds per snapshot
whatever happened since the last one. The columns captured last time stay right as long as
none of their entries' answers changed; then only the entries appended since are answered,
their outcomes taken from the log's column of them (a slice, not a lookup each). The capture
hands the chunk over in pieces (those of the captures before, which never change, and the new
one), and the snapshot thread joins them (`GrowingChunk.body`): joining copies every entry,
which the main thread then does not.

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

from array import array
from dataclasses import dataclass
from itertools import chain
from operator import is_
from typing import cast

from command_server.outcome_log import OutcomeColumns, OutcomeLog
from command_server.snapshot_format import OutcomeChunk
from command_server.write_model import IndexEntry, WriteModel

_MAX_PIECES = 32
"""A chunk captured in more pieces is joined on the main thread (small, frequent snapshots)."""


@dataclass(frozen=True, slots=True)
class GrowingChunk:
    """An outcome chunk as a capture took it: pieces to join on the snapshot thread."""

    lineage: str
    pieces: tuple[OutcomeColumns, ...]

    def body(self) -> OutcomeChunk:
        return OutcomeChunk(self.lineage, joined(self.pieces))


@dataclass(slots=True)
class _Growing:
    """One partition's growing chunk as captured: its pieces (handed out, so never changed)
    and the index entries they answer (this module's own)."""

    number: int
    pieces: tuple[OutcomeColumns, ...]
    entries: list[IndexEntry | None]

    @property
    def end(self) -> int:
        last = self.pieces[-1]
        return last.first + len(last)

    def command_ids(self) -> list[str]:
        return list(chain.from_iterable(piece.command_ids for piece in self.pieces))


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
        intact = again is not None and model is self._model and self._intact(model)
        self._appended_since = {}
        if intact and model.forgets == self._forgets:
            self._appended_since = {p: end for p, (_, end) in self._logs.items()}
        self._growing = self._unchanged(model, again) if again is not None and intact else {}
        self._model = model
        self._logs = {p: (log, log.end) for p, log in model.logs.items()}
        self._forgets = model.forgets

    def chunk(self, model: WriteModel, partition: int, number: int) -> tuple[OutcomeColumns, ...]:
        """Outcome chunk `number` of `partition` in pieces whose `joined` is what `model.chunk`
        would build now (call `begin` first)."""
        size = model.chunk_entries
        first = number * size
        log = model.logs[partition]
        span = log.span(first, first + size)
        growing = self._growing.get(partition)
        if (
            growing is not None
            and growing.number == number
            and growing.pieces[0].first == span.start
            and growing.end <= span.stop
        ):
            entries = self._entries(model, partition, growing.end, span.stop)
            new = log.columns(range(growing.end, span.stop), *model.answers(entries))
            pieces = (*growing.pieces, new)
            if len(pieces) > _MAX_PIECES:
                pieces = (joined(pieces),)
            growing.pieces = pieces
            growing.entries += entries
        else:
            entries = self._entries(model, partition, span.start, span.stop)
            new = log.columns(span, *model.answers(entries))
            growing = _Growing(number, (new,), entries)
        # A token "" answers an entry forgotten already (every other token has a position).
        if span.stop < first + size and "" not in new.tokens:
            self._growing[partition] = growing
        elif self._growing.get(partition) is growing:
            del self._growing[partition]
        return growing.pieces

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

    def _intact(self, model: WriteModel) -> bool:
        """Whether every log is the one of the last capture (none replaced by a restore, which
        also changes other partitions' index entries) and forgot none of the entries appended
        since (whose ids are then unknown)."""
        for partition, log in model.logs.items():
            then, end = self._logs.get(partition, (log, 0))
            if then is not log or log.start > end:
                return False
        return True

    def _unchanged(self, model: WriteModel, again: list[str]) -> dict[int, _Growing]:
        """The growing chunks whose answers are still those captured."""
        kept = self._growing
        if again:
            recorded = set(again)
            kept = {p: g for p, g in kept.items() if recorded.isdisjoint(g.command_ids())}
        if model.forgets == self._forgets:
            return kept
        return {
            p: g
            for p, g in kept.items()
            if all(map(is_, model.entries(g.command_ids()), g.entries))
        }


def joined(pieces: tuple[OutcomeColumns, ...]) -> OutcomeColumns:
    """The columns of consecutive `pieces` as one."""
    if len(pieces) == 1:
        return pieces[0]
    offsets, versions = array("q"), array("q")
    for piece in pieces:
        offsets += piece.offsets
        versions += piece.versions
    return OutcomeColumns(
        pieces[0].first,
        list(chain.from_iterable(piece.command_ids for piece in pieces)),
        b"".join(piece.fingerprints for piece in pieces),
        offsets,
        versions,
        list(chain.from_iterable(piece.tokens for piece in pieces)),
    )
