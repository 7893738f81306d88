"""The read model's contract between the projector and the query server: the NOTIFY payload
as the query server reads it."""

from __future__ import annotations

import pytest

from ledger.read_model_contract import MalformedNotification, parse_notification


def test_notifications_for_our_topic_are_parsed() -> None:
    payload = '{"topic": "account_events", "checkpoints": {"0": 12, "5": 0}}'
    assert parse_notification(payload, "account_events") == {0: 12, 5: 0}
    assert parse_notification(payload, "other_topic") is None


def test_notifications_about_another_schema_are_ignored() -> None:
    live = '{"topic": "t", "schema": "ledger", "checkpoints": {"0": 1}}'
    shadow = '{"topic": "t", "schema": "ledger_rebuild", "checkpoints": {"0": 99}}'
    assert parse_notification(live, "t") == {0: 1}
    assert parse_notification(shadow, "t") is None


@pytest.mark.parametrize(
    "payload",
    [
        "not json",
        "[]",
        '{"checkpoints": {}}',
        '{"topic": "account_events"}',
        '{"topic": "account_events", "checkpoints": {"x": 1}}',
        '{"topic": "account_events", "checkpoints": {"0": "1"}}',
        '{"topic": "account_events", "checkpoints": {"0": true}}',
        '{"topic": "account_events", "checkpoints": {"0": 1.5}}',
    ],
)
def test_malformed_notifications_are_reported(payload: str) -> None:
    with pytest.raises(MalformedNotification):
        parse_notification(payload, "account_events")
