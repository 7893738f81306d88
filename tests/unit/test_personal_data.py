"""Crypto-shredding without I/O: sealing and opening owners, wrapping keys, what the event store
writes with the events, what the decider, the projector and the query server make of an
erasure (docs/design.md, decision 14)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from command_server.sealing import Sealing
from command_server.writer.protocol import pack_command, unpack_command
from ledger.domain.account import AccountStatus
from ledger.domain.commands import CloseAccount, Deposit, EraseOwner, OpenAccount
from ledger.domain.decider import decide, replay
from ledger.domain.rejection import RejectionKind
from ledger.events.records import AccountOpened, Event, OwnerErased
from ledger.personal_data import (
    KeysUnreachable,
    KeyWrapper,
    UnreadableSecret,
    new_data_key,
    open_sealed,
    parse_key_encryption_key,
    readable_owner,
    seal,
)
from projector.consumed import DecodedRecord
from projector.projection import project
from query_server.errors import Unavailable
from query_server.owners import Owners
from query_server.rows import AccountRow
from tests.unit.decider_givens import NOW, closed, given, rejected

NAME = "Ada Lovelace"
WRAPPER = KeyWrapper(bytes(range(32)))


class Keys:
    """A key store in memory: what the key topic holds, unwrapped."""

    def __init__(self) -> None:
        self.keys: dict[str, bytes] = {}

    def get(self, account_id: str) -> bytes | None:
        return self.keys.get(account_id)

    def holds(self, account_id: str) -> bool:
        return account_id in self.keys


def test_a_sealed_owner_opens_only_with_its_key_and_its_account() -> None:
    key = new_data_key()
    sealed = seal(key, "a1", NAME)
    assert NAME.encode() not in sealed
    assert open_sealed(key, "a1", sealed) == NAME
    # A fresh nonce each time: equal owners do not show as equal bytes.
    assert seal(key, "a1", NAME) != sealed
    with pytest.raises(UnreadableSecret, match="'a2'") as caught:
        open_sealed(key, "a2", sealed)
    assert NAME not in str(caught.value)
    with pytest.raises(UnreadableSecret):
        open_sealed(new_data_key(), "a1", sealed)


def test_a_wrapped_key_unwraps_only_with_its_key_encryption_key() -> None:
    key = new_data_key()
    wrapped = WRAPPER.wrap(key)
    assert key not in wrapped
    assert WRAPPER.unwrap("a1", wrapped) == key
    with pytest.raises(UnreadableSecret, match="LEDGER_KEY_ENCRYPTION_KEY_FILE"):
        KeyWrapper(bytes(32)).unwrap("a1", wrapped)


def test_the_key_encryption_key_file_holds_64_hex_digits() -> None:
    assert parse_key_encryption_key("00" * 32 + "\n") == bytes(32)
    with pytest.raises(ValueError, match="64 hex digits"):
        parse_key_encryption_key("00" * 16)
    with pytest.raises(ValueError, match="64 hex digits"):
        parse_key_encryption_key("zz" * 32)


def _decided(*commands: OpenAccount | Deposit | CloseAccount | EraseOwner) -> list[Event]:
    events: list[Event] = []
    for command in commands:
        events += decide(command, replay(events), NOW)
    return events


def test_the_event_store_seals_each_owner_with_a_new_key_written_beside_it() -> None:
    keys = Keys()
    events = _decided(OpenAccount("c1", "a1", "EUR", NAME), Deposit("c2", "a1", "5"))
    sealed, records = Sealing("keys", WRAPPER).seal([(event, 3) for event in events])

    [(account_id, wrapped)] = records
    assert account_id == "a1"
    assert wrapped is not None
    keys.keys["a1"] = WRAPPER.unwrap("a1", wrapped)
    opened, _ = sealed[0]
    assert isinstance(opened, AccountOpened)
    assert opened.owner == ""
    assert open_sealed(keys.keys["a1"], "a1", opened.owner_sealed) == NAME
    assert [partition for _, partition in sealed] == [3, 3]
    assert sealed[1][0] == events[1]


def test_an_erasure_is_written_with_the_tombstone_of_its_key() -> None:
    events = _decided(OpenAccount("c1", "a1", "EUR", NAME), EraseOwner("c2", "a1"))
    _, records = Sealing("keys", WRAPPER).seal([(events[1], 0)])
    assert records == [("a1", None)]


def test_erasing_keeps_balance_status_and_history_and_may_be_repeated() -> None:
    accounts = given(*closed("a1"))
    events = decide(EraseOwner("e1", "a1"), accounts, NOW)
    assert [type(event) for event in events] == [OwnerErased]
    after = replay(events, accounts)["a1"]
    assert (after.owner, after.status, after.balance) == ("", AccountStatus.CLOSED, 0)
    assert after.version == accounts["a1"].version + 1
    erased = replay(events, accounts)
    again = replay(decide(EraseOwner("e2", "a1"), erased, NOW), erased)
    assert again["a1"].version == after.version + 1


def test_an_erasure_crosses_the_pipe_to_the_writer() -> None:
    command = EraseOwner("e1", "a1")
    assert unpack_command(pack_command(command)) == command


def test_erasing_an_unknown_account_is_not_found() -> None:
    assert rejected(EraseOwner("e1", "nobody"), {}).kind is RejectionKind.NOT_FOUND


def test_the_read_model_keeps_the_sealed_owner_until_the_erasure_forgets_it() -> None:
    events = _decided(
        OpenAccount("c1", "a1", "EUR", ""), Deposit("c2", "a1", "5"), EraseOwner("c3", "a1")
    )
    opened = replace(events[0], owner_sealed=b"sealed")  # type: ignore[arg-type]
    records = [DecodedRecord(0, n, event) for n, event in enumerate([opened, *events[1:]])]

    before = project("t", records[:2], {}).accounts["a1"]
    assert (before.owner_sealed, before.owner_erased) == (b"sealed", False)
    after = project("t", records[2:], {"a1": before}).accounts["a1"]
    assert (after.owner_sealed, after.owner_erased, after.account.owner) == (None, True, "")
    assert after.account.balance == before.account.balance == 500


def test_an_owner_recorded_in_plaintext_is_forgotten_by_the_read_model() -> None:
    events = _decided(OpenAccount("c1", "a1", "EUR", NAME), EraseOwner("c2", "a1"))
    records = [DecodedRecord(0, n, event) for n, event in enumerate(events)]
    stored = project("t", records, {}).accounts["a1"]
    assert (stored.account.owner, stored.owner_erased) == ("", True)


def _row(owner: str = "", sealed: bytes | None = None, erased: bool = False) -> AccountRow:
    at = datetime(2026, 1, 1, tzinfo=UTC)
    return AccountRow("a1", "EUR", owner, "OPEN", 0, 1, 0, at, at, sealed, erased)  # type: ignore[arg-type]


async def test_the_query_server_opens_sealed_owners_and_shows_forgotten_ones_erased() -> None:
    keys = Keys()
    keys.keys["a1"] = new_data_key()
    owners = Owners(keys)
    sealed = seal(keys.keys["a1"], "a1", NAME)

    shown = await owners.opened(_row(sealed=sealed))
    assert (shown.owner, shown.owner_erased) == (NAME, False)
    assert (await owners.opened(_row(owner="Old Style"))).owner == "Old Style"
    # The key is forgotten in the erasure's transaction: gone before the read model shows it.
    del keys.keys["a1"]
    shown = await owners.opened(_row(sealed=sealed))
    assert (shown.owner, shown.owner_erased) == ("", True)
    assert readable_owner(keys, "a1", "", None, True) == ("", True)


async def test_a_key_store_that_cannot_be_asked_makes_the_read_unavailable_not_a_bug() -> None:
    class Unreachable:
        def get(self, account_id: str) -> bytes | None:
            raise KeysUnreachable("the key topic cannot be read now: broker down")

        def holds(self, account_id: str) -> bool:
            return False

    sealed = seal(new_data_key(), "a1", NAME)
    with pytest.raises(Unavailable, match="cannot be opened now"):
        await Owners(Unreachable()).opened(_row(sealed=sealed))
