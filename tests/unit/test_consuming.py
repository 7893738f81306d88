"""consume_ready waits only for the first message, then takes what is already fetched."""

from __future__ import annotations

from typing import Any

from ledger.events.consuming import consume_ready


class RecordingConsumer:
    def __init__(self, queued: list[str]) -> None:
        self.queued = queued
        self.calls: list[tuple[str, int, float]] = []

    def poll(self, timeout: float) -> str | None:
        self.calls.append(("poll", 1, timeout))
        return self.queued.pop(0) if self.queued else None

    def consume(self, num_messages: int, timeout: float) -> list[str]:
        self.calls.append(("consume", num_messages, timeout))
        taken, self.queued = self.queued[:num_messages], self.queued[num_messages:]
        return taken


def _ready(consumer: RecordingConsumer, most: int, wait: float) -> list[Any]:
    return consume_ready(consumer, most, wait)  # type: ignore[arg-type]


def test_after_the_first_message_only_what_is_fetched_is_taken_without_waiting() -> None:
    consumer = RecordingConsumer(["a", "b", "eof"])
    assert _ready(consumer, 1000, 0.5) == ["a", "b", "eof"]
    # Consumer.consume(1000, 0.5) would have waited the whole half second for 997 more.
    assert consumer.calls == [("poll", 1, 0.5), ("consume", 999, 0)]


def test_nothing_within_the_wait_is_an_empty_list() -> None:
    consumer = RecordingConsumer([])
    assert _ready(consumer, 1000, 0.25) == []
    assert consumer.calls == [("poll", 1, 0.25)]


def test_never_more_than_asked() -> None:
    consumer = RecordingConsumer(["a", "b", "c"])
    assert _ready(consumer, 2, 0.5) == ["a", "b"]
    assert _ready(consumer, 1, 0.5) == ["c"]
