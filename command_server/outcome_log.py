"""The outcomes recorded in one partition, oldest first, in packed columns.

The dedupe memory holds up to a million command outcomes. As Python objects they would take
seconds to rebuild from a snapshot; as columns (a list of ids, 32-byte fingerprints in one
bytearray, offsets and versions in machine-word arrays) they load at memory speed and are cut
into snapshot chunks without touching what earlier snapshots already wrote.

Entries are numbered by an absolute index that keeps counting across evictions and, when state
comes from a snapshot, across restarts: a chunk (CHUNK_ENTRIES entries unless configured
otherwise) is then immutable once full, so a snapshot writes only new chunks.
"""

from __future__ import annotations

from array import array
from dataclasses import dataclass

FINGERPRINT_BYTES = 32
CHUNK_ENTRIES = 1_000
"""The default of LEDGER_DEDUPE_CHUNK_ENTRIES. Every snapshot writes each partition's last,
growing chunk whole again: at 10,000 entries (~1 MB) that was most of a snapshot's bytes under
load, and one transaction of 3-8 MB every 2 s was what the sustained ack tail began at
(docs/performance.md, "Smaller outcome chunks"). At 1,000 a chunk is ~110 KB and a snapshot
writes little more than the entries since the last one; a restart reads ten times as many
records, for the same bytes and the same CPU (measured there)."""


@dataclass(frozen=True, slots=True)
class OutcomeColumns:
    """Entries [first, first + len(command_ids)) of one partition's log, with the answer each
    command got (its version and consistency token; "" for a command no longer remembered)."""

    first: int
    command_ids: list[str]
    fingerprints: bytes
    """FINGERPRINT_BYTES per entry: the sha256 digests that `fingerprint()` spells in hex."""
    offsets: array[int]
    """Where the entry's event is in the partition."""
    versions: array[int]
    tokens: list[str]

    def __len__(self) -> int:
        return len(self.command_ids)


class OutcomeLog:
    """One entry per event: who wrote it (command id and fingerprint) and where it is.

    Answers are kept only for entries restored from a snapshot; for the others the write model
    holds the command's Outcome, which a snapshot copies next to the entry. Each of those
    entries also keeps the outcome object it was appended with, so that a snapshot takes the
    outcomes of the entries appended since the last one as a slice rather than a lookup each.
    """

    def __init__(self, first: int = 0) -> None:
        self._first = first
        """Absolute index of the first entry still in the columns."""
        self._ids: list[str] = []
        self._fingerprints = bytearray()
        self._offsets = array("q")
        self._versions = array("q")
        self._tokens: list[str] = []
        self._outcomes: list[object] = []
        """The outcome each entry was appended with; None for those restored."""
        self._restored_end = first
        """Entries before this absolute index came from a snapshot."""

    @property
    def start(self) -> int:
        return self._first

    @property
    def end(self) -> int:
        return self._first + len(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    def append(self, command_id: str, fingerprint: str, offset: int, outcome: object) -> int:
        """Record one event, whose command has `outcome` now; returns its absolute index."""
        self._ids.append(command_id)
        self._fingerprints += bytes.fromhex(fingerprint)
        self._offsets.append(offset)
        self._versions.append(0)
        self._tokens.append("")
        self._outcomes.append(outcome)
        return self._first + len(self._ids) - 1

    def extend(self, columns: OutcomeColumns) -> None:
        """Append entries read back from a snapshot; they must continue this log."""
        if columns.first != self.end:
            raise ValueError(
                f"entries from {columns.first} do not continue a log ending at {self.end}"
            )
        self._ids += columns.command_ids
        self._fingerprints += columns.fingerprints
        self._offsets += columns.offsets
        self._versions += columns.versions
        self._tokens += columns.tokens
        self._outcomes += [None] * len(columns)
        self._restored_end = self.end

    def command_id(self, index: int) -> str:
        return self._ids[index - self._first]

    def command_ids(self, first: int, end: int) -> list[str]:
        """The ids of entries [first, end), which the log must hold."""
        return self._ids[first - self._first : end - self._first]

    def outcomes(self, first: int, end: int) -> list[object] | None:
        """The outcomes entries [first, end) were appended with; None if some were restored."""
        if first < self._restored_end:
            return None
        return self._outcomes[first - self._first : end - self._first]

    def offset(self, index: int) -> int:
        return self._offsets[index - self._first]

    def fingerprint(self, index: int) -> str:
        at = index - self._first
        return self._fingerprints[at * FINGERPRINT_BYTES : (at + 1) * FINGERPRINT_BYTES].hex()

    def answer(self, index: int) -> tuple[int, str]:
        """(version, token) restored for the entry at absolute `index`; token "" if none."""
        at = index - self._first
        return self._versions[at], self._tokens[at]

    def drop_oldest(self, count: int) -> None:
        """Forget the `count` oldest entries (the caller has already unindexed them)."""
        count = min(count, len(self._ids))
        del self._ids[:count]
        del self._fingerprints[: count * FINGERPRINT_BYTES]
        del self._offsets[:count]
        del self._versions[:count]
        del self._tokens[:count]
        del self._outcomes[:count]
        self._first += count

    def columns(self, span: range, versions: array[int], tokens: list[str]) -> OutcomeColumns:
        """The entries of `span` (from `span()`), with their commands' `versions` and `tokens`."""
        lo, hi = span.start - self._first, span.stop - self._first
        return OutcomeColumns(
            span.start,
            self._ids[lo:hi],
            bytes(self._fingerprints[lo * FINGERPRINT_BYTES : hi * FINGERPRINT_BYTES]),
            self._offsets[lo:hi],
            versions,
            tokens,
        )

    def span(self, first: int, end: int) -> range:
        """The absolute indexes of [first, end) that the log still holds."""
        return range(max(first, self._first), max(min(end, self.end), max(first, self._first)))
