"""Every command field is checked before any account state is needed, naming the field."""

from __future__ import annotations

import pytest

from ledger.command_ids import new_command_id
from ledger.domain.commands import Command, Deposit, OpenAccount, Transfer
from ledger.domain.rejection import Rejection, RejectionKind
from ledger.domain.validation import require_fields, require_printable


def _open(owner: str = "Ada", currency: str = "USD") -> OpenAccount:
    return OpenAccount(new_command_id(), "acc-1", currency, owner)


@pytest.mark.parametrize(
    "character",
    ["\x00", "\x07", "\x1b", "\x7f", "\x85", "\u2028", "\u2029", "\u202e", "\u2066", "\ufeff"],
)
def test_an_owner_with_a_control_or_invisible_character_is_refused(character: str) -> None:
    with pytest.raises(Rejection) as refused:
        require_fields(_open(owner=f"Ada{character}Lovelace"))
    assert refused.value.kind is RejectionKind.INVALID
    assert refused.value.message.startswith("owner contains")
    assert f"U+{ord(character):04X} at position 3" in refused.value.message


@pytest.mark.parametrize(
    "owner",
    [
        "",
        "Ada Lovelace",
        "Zoë Ångström",
        "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645",
        "👩\u200d💻 Grace",
        "李\u00a0四",
    ],
)
def test_printable_owners_in_any_script_are_accepted(owner: str) -> None:
    require_fields(_open(owner=owner))


def test_a_lone_surrogate_is_refused() -> None:
    with pytest.raises(Rejection, match="U\\+D800"):
        require_printable("a\ud800", "owner")


@pytest.mark.parametrize("currency", ["US", "usd", "XYZ", "USD\x00", "U" * 1_000_000])
def test_a_currency_that_is_not_a_known_code_is_refused_briefly(currency: str) -> None:
    with pytest.raises(Rejection) as refused:
        require_fields(_open(currency=currency))
    assert "currency" in refused.value.message
    assert len(refused.value.message) < 200


@pytest.mark.parametrize(
    "command",
    [
        Deposit(new_command_id(), "acc\x00", "1.00"),
        Deposit(new_command_id(), "acc-1", "1.00\x00"),
        Deposit(new_command_id(), "acc-1", "1" * 1_000_000),
        Deposit(new_command_id(), "acc-1", "1.00", expected_version=0),
        Transfer(new_command_id(), "a" * 1_000_000, "acc-2", "1.00"),
        Transfer(new_command_id(), "acc-1", "acc-1", "1.00"),
    ],
)
def test_malformed_fields_are_refused_with_a_short_message(command: Command) -> None:
    with pytest.raises(Rejection) as refused:
        require_fields(command)
    assert refused.value.kind is RejectionKind.INVALID
    assert len(refused.value.message) < 300
