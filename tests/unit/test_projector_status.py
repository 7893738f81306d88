"""Lag per partition, and the status document built from it."""

from __future__ import annotations

import pytest

from projector.status import Status, lag


@pytest.mark.parametrize(
    ("high_watermark", "checkpoint", "position", "expected"),
    [
        # Caught up, the last offset (9) being a transaction's commit marker: the consumer's
        # position has moved past it, the checkpoint (the last record) cannot.
        (10, 8, 10, 0),
        # Caught up, but the consumer has not yet polled past the marker.
        (10, 8, 9, 1),
        # Caught up on a partition whose last offset is a record (no marker).
        (10, 9, None, 0),
        (10, 9, 10, 0),
        # Behind.
        (10, 4, 5, 5),
        (10, None, None, 10),
        (10, None, 0, 10),
        # Empty partition.
        (0, None, None, 0),
        (0, None, 0, 0),
        # Another instance moved the checkpoint on after we read the watermark: never negative.
        (10, 15, None, 0),
        # A position read before a batch that another instance already committed further.
        (20, 17, 12, 2),
    ],
)
def test_lag(
    high_watermark: int, checkpoint: int | None, position: int | None, expected: int
) -> None:
    assert lag(high_watermark, checkpoint, position) == expected


def test_report_tracks_assignment_commits_and_observations() -> None:
    status = Status("account_events")
    status.set_consuming(True)
    status.assigned({0: 41, 1: None})
    status.observed(0, position=42, high_watermark=50)
    status.observed(7, position=1, high_watermark=1)  # not ours: ignored
    status.committed({0: 47, 1: 3}, applied=9, dead_letters=2)
    status.observed(1, position=None, high_watermark=None)

    report = status.report()
    assert report == {
        "topic": "account_events",
        "consuming": True,
        "partitions": {
            "0": {"checkpoint": 47, "high_watermark": 50, "lag": 2},
            "1": {"checkpoint": 3, "high_watermark": None, "lag": None},
        },
        "events_applied": 9,
        "dead_letters": 2,
        "batches": 1,
    }
    status.revoked([0, 1])
    assert status.report()["partitions"] == {}
