"""An event store in memory for the batcher's unit tests: what was appended, in which order,
and failures on demand."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from command_server.event_store import AppendUnsettled, Fenced
from command_server.transactions import Consumed, Message_
from ledger.events.records import Event


class FakeEventStore:
    """Records the `(event, partition)` pairs appended and gives each the next offset of its
    partition; `fail_next` makes the next append raise instead, and `commit_anyway` makes that
    failed append's events land in the log all the same (an unsettled transaction that
    committed). `down` says why Kafka does not answer (recover and probe), None when it does."""

    def __init__(self) -> None:
        self.appended: list[tuple[Event, int]] = []
        self.messages: list[Message_] = []
        self.consumed: list[Consumed] = []
        self.offsets: list[int] = []
        self.log: dict[int, list[Event]] = {}
        self.transactions = 0
        self.begun = 0
        self.encoded = 0
        self.fail_next: Exception | None = None
        self.commit_anyway = False
        self.down: str | None = None
        self.fence: Fenced | None = None
        self.recoveries = 0

    def append(
        self,
        events: Sequence[tuple[Event, int]],
        messages: Sequence[Message_] = (),
        consumed: Consumed | None = None,
    ) -> list[int]:
        self.transactions += 1
        failure, self.fail_next = self.fail_next, None
        if failure is not None:
            if self.commit_anyway:
                self._write(events)
            raise failure
        offsets = self._write(events)
        self.messages += messages
        self.consumed += [consumed] if consumed is not None else []
        self.appended += events
        self.offsets += offsets
        return offsets

    def encode(self, events: Sequence[tuple[Event, int]]) -> Sequence[tuple[Event, int]]:
        """The events are their own records here."""
        self.encoded += 1
        return events

    def begin_append(
        self, events: Sequence[tuple[Event, int]], messages: Sequence[Message_] = ()
    ) -> tuple[Sequence[tuple[Event, int]], Sequence[Message_]]:
        """Nothing happens before the commit here: `end_append` appends (or fails)."""
        self.begun += 1
        return events, messages

    def end_append(
        self, appending: tuple[Sequence[tuple[Event, int]], Sequence[Message_]]
    ) -> list[int]:
        return self.append(*appending)

    def _write(self, events: Sequence[tuple[Event, int]]) -> list[int]:
        offsets = []
        for event, partition in events:
            offsets.append(len(self.log.setdefault(partition, [])))
            self.log[partition].append(event)
        return offsets

    def recover(self) -> None:
        self.recoveries += 1
        if self.down is not None:
            raise AppendUnsettled(self.down)

    def probe(self, partitions: Sequence[int]) -> str | None:
        if self.fence is not None:
            raise self.fence
        return self.down

    def replay(
        self,
        partitions: Sequence[int],
        apply: Callable[[Event, int, int], None],
        start: dict[int, int] | None = None,
        timeout: float = 600,
    ) -> int:
        if self.down is not None:
            raise TimeoutError(self.down)
        count = 0
        for partition in partitions:
            events = self.log.get(partition, [])
            first = (start or {}).get(partition, 0)
            for offset in range(first, len(events)):
                apply(events[offset], partition, offset)
                count += 1
        return count
