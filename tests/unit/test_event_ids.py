"""Event ids are the UUIDv5 of `<account_id>/<version>` in the ledger's namespace: the fast
spelling in ledger/events/records.py must give exactly what `uuid.uuid5` gives."""

from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from ledger.events.records import _EVENT_ID_NAMESPACE, event_id_for


@given(st.text(min_size=1, max_size=64), st.integers(min_value=0, max_value=2**62))
def test_event_id_is_the_uuid5_of_account_and_version(account_id: str, version: int) -> None:
    assert event_id_for(account_id, version) == str(
        uuid.uuid5(_EVENT_ID_NAMESPACE, f"{account_id}/{version}")
    )


def test_a_known_event_id_never_changes() -> None:
    # Stored in every event: a change here would give a retried write new ids.
    assert event_id_for("acc-1", 1) == "5a000250-cd39-5ca6-ac05-af130113b12c"
