"""An event the read model cannot store is a contradiction named as such, before any write."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime

import pytest

from ledger.events.records import AccountOpened, Event, TransferCredited
from projector.consumed import DecodedRecord
from projector.projection import Contradiction, project
from projector.storable import MAX_STORED_ID_LENGTH, unstorable
from tests.unit.event_envelopes import envelope

T0 = datetime(2026, 5, 1, 12, tzinfo=UTC)
OPENED = AccountOpened(**envelope("a", 1, T0), balance_after=0, currency="USD", owner="Ada")
CREDITED = TransferCredited(
    **envelope("a", 2, T0), balance_after=5, amount=5, transfer_id="t", counterparty_id="b"
)


def test_what_the_command_server_writes_is_storable() -> None:
    assert unstorable(OPENED) is None
    assert unstorable(CREDITED) is None
    assert unstorable(dataclasses.replace(OPENED, owner="Zoë \u2028 \u202e")) is None
    assert unstorable(dataclasses.replace(CREDITED, reference="r" * 64, memo="März ✓")) is None


@pytest.mark.parametrize(
    ("event", "reason"),
    [
        (dataclasses.replace(OPENED, owner="Ada\x00"), "owner 'Ada\\x00' contains NUL"),
        (dataclasses.replace(OPENED, currency="XYZ"), "unknown currency 'XYZ'"),
        (dataclasses.replace(OPENED, event_id="e1"), "event_id 'e1' is not a UUID"),
        (dataclasses.replace(OPENED, command_id="c\x00"), "command_id 'c\\x00' contains NUL"),
        (dataclasses.replace(CREDITED, transfer_id="\x00"), "transfer_id '\\x00' contains NUL"),
        (
            dataclasses.replace(CREDITED, counterparty_id="b" * (MAX_STORED_ID_LENGTH + 1)),
            f"counterparty_id is {MAX_STORED_ID_LENGTH + 1} characters long",
        ),
        (dataclasses.replace(CREDITED, memo="m\x00"), "memo 'm\\x00' contains NUL"),
        (dataclasses.replace(CREDITED, reference="\x00r"), "reference '\\x00r' contains NUL"),
        (
            dataclasses.replace(CREDITED, reference="r" * (MAX_STORED_ID_LENGTH + 1)),
            f"reference is {MAX_STORED_ID_LENGTH + 1} characters long",
        ),
    ],
)
def test_an_unstorable_event_stops_the_projection_naming_where_it_is(
    event: Event, reason: str
) -> None:
    records = [DecodedRecord(0, 40, OPENED), DecodedRecord(0, 41, event)]
    if event.version == 1:
        records = records[1:]
    with pytest.raises(Contradiction) as stopped:
        project("account_events", records, {})
    message = str(stopped.value)
    assert message.startswith(
        f"event at topic 'account_events' partition 0 offset 41 (account 'a', event version "
        f"{event.version}) cannot be stored in the read model: "
    )
    assert reason in message
    assert "ledger.checkpoints" in message  # what the operator can do
    assert stopped.value.offset == 41


def test_every_spelling_of_a_uuid_postgresql_takes_is_storable() -> None:
    canonical = OPENED.event_id
    for spelling in (canonical.upper(), canonical.replace("-", "")):
        assert unstorable(dataclasses.replace(OPENED, event_id=spelling)) is None
