"""Sealing owners on their way into the log, and the key records that go with them.

The decider stays pure and decides events with the owner in plaintext; just before encoding,
the event store seals each AccountOpened's owner with a new data key and writes that key
(wrapped) to the key topic in the same transaction, and writes a tombstone for the key of each
OwnerErased. Neither an event without its key nor an erasure that left the key can commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace

from ledger.events.records import AccountOpened, Event, OwnerErased
from ledger.personal_data import KeyWrapper, new_data_key, seal


@dataclass(frozen=True, slots=True)
class Sealing:
    """What an event store needs to seal owners: the key topic and the key wrapper."""

    key_topic: str
    wrapper: KeyWrapper

    def seal(
        self, events: Sequence[tuple[Event, int]]
    ) -> tuple[list[tuple[Event, int]], list[tuple[str, bytes | None]]]:
        """The events as they go into the log (owners sealed), and the key records to write
        with them: (account id, wrapped data key), or (account id, None) to forget one."""
        sealed: list[tuple[Event, int]] = []
        keys: list[tuple[str, bytes | None]] = []
        for event, partition in events:
            if isinstance(event, AccountOpened) and event.owner:
                data_key = new_data_key()
                keys.append((event.account_id, self.wrapper.wrap(data_key)))
                owner_sealed = seal(data_key, event.account_id, event.owner)
                event = replace(event, owner="", owner_sealed=owner_sealed)
            elif isinstance(event, OwnerErased):
                keys.append((event.account_id, None))
            sealed.append((event, partition))
        return sealed, keys
