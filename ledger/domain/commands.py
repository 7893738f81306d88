"""What clients ask the ledger to do, as received from the API (amounts still decimal strings)."""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeAlias, TypedDict

from ledger.domain.money import canonical_decimal


@dataclass(frozen=True, slots=True)
class OpenAccount:
    command_id: str
    account_id: str
    currency: str
    owner: str


@dataclass(frozen=True, slots=True)
class _Movement:
    """The fields of a deposit and of a withdrawal: one account, one amount."""

    command_id: str
    account_id: str
    amount: str
    expected_version: int | None = None
    reference: str = ""
    """The client's own id of the movement, carried by its events; "" for none."""
    memo: str = ""
    """The client's free-text note on the movement; "" for none."""


@dataclass(frozen=True, slots=True)
class Deposit(_Movement):
    """Money paid into the account."""


@dataclass(frozen=True, slots=True)
class Withdraw(_Movement):
    """Money taken out of the account."""


@dataclass(frozen=True, slots=True)
class Transfer:
    command_id: str
    from_account_id: str
    to_account_id: str
    amount: str
    expected_version: int | None = None
    """Expected version of the source account (`from_account_id`)."""
    reference: str = ""
    """The client's own id of the transfer, carried by both legs' events; "" for none."""
    memo: str = ""
    """The client's free-text note on the transfer; "" for none."""


@dataclass(frozen=True, slots=True)
class CloseAccount:
    command_id: str
    account_id: str
    expected_version: int | None = None


@dataclass(frozen=True, slots=True)
class EraseOwner:
    """Forget the account's owner (right to erasure); balances and history stay."""

    command_id: str
    account_id: str


Command: TypeAlias = OpenAccount | Deposit | Withdraw | Transfer | CloseAccount | EraseOwner
MOVEMENTS = (Deposit, Withdraw, Transfer)
"""The commands that move money, for isinstance: `Deposit | Withdraw | Transfer` there builds a
union per call, which costs the batch path more than the check."""


_DECIMAL = re.compile(r"([0-9]+)(?:\.([0-9]+))?")


def fingerprint(command: Command) -> str:
    """A stable hash of everything the command asks for except its id, amounts canonical.

    A retry carrying the same command_id is only the same command if its fingerprint matches,
    so `7.5`, `7.50` and `007.5` are one command. The fingerprint is stored in events, so the
    payload's names below must never change.

    The owner is left out: a hash of a name is as good as the name to anyone who can guess it,
    and the log keeps fingerprints forever (docs/design.md, decision 14). A retry of OpenAccount
    that names another owner is thus the same command; the first owner stays.

    A movement's `reference` and `memo` are in it, but only when given: a command without them
    hashes exactly as it did before they existed, so retries of commands recorded then match.
    """
    if isinstance(command, MOVEMENTS):
        return movement_fingerprint(command, canonical_amount(command.amount))
    return _digest(_payload(command, canonical_amount, with_owner=False))


def movement_fingerprint(command: Deposit | Withdraw | Transfer, amount: str) -> str:
    """The fingerprint of a movement whose canonical amount is `amount` (the decider has it from
    parsing the amount): `_payload`'s canonical JSON spelled in one string, keys in sorted order,
    rather than a dict built and sorted per command (docs/performance.md, "Deciding a command
    for less"). tests/unit/test_movement_fingerprints.py holds it equal to the general way."""
    version = command.expected_version
    if version is None:
        expected = "null"
    elif type(version) is int:
        expected = int.__repr__(version)
    else:
        return _digest(_payload(command, lambda _: amount, with_owner=False))
    metadata = f',"memo":{_QUOTED(command.memo)}' if command.memo else ""
    if command.reference:
        metadata += f',"reference":{_QUOTED(command.reference)}'
    if isinstance(command, Transfer):
        text = (
            f'{{"amount":{_QUOTED(amount)},"expected_version":{expected},'
            f'"from_account_id":{_QUOTED(command.from_account_id)}{metadata},'
            f'"to_account_id":{_QUOTED(command.to_account_id)},"type":"transfer"}}'
        )
    else:
        kind = "deposit" if isinstance(command, Deposit) else "withdraw"
        text = (
            f'{{"account_id":{_QUOTED(command.account_id)},"amount":{_QUOTED(amount)},'
            f'"expected_version":{expected}{metadata},"type":"{kind}"}}'
        )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def literal_fingerprint(command: Command) -> str:
    """The fingerprint as events recorded it before amounts were made canonical (of the amount
    as sent) and before owners were left out (with the owner). A retry of such an event's
    command matches it if it repeats the amount, or the owner, exactly. Only ever computed to
    compare, never stored."""
    return _digest(_payload(command, str))


def canonical_amount(amount: str) -> str:
    """The decimal without leading zeros or trailing fractional zeros (`007.50` -> `7.5`), the
    way most clients write it, so most fingerprints recorded on the literal text still match.
    Text that is not a plain decimal is kept as is (the command is refused anyway)."""
    match = _DECIMAL.fullmatch(amount)
    if match is None:
        return amount
    return canonical_decimal(match.group(1), match.group(2) or "")


# What json.dumps(payload, sort_keys=True, separators=(",", ":")) uses, for what `_canonical`
# does not spell itself.
_CANONICAL_JSON = json.JSONEncoder(sort_keys=True, separators=(",", ":"))
_QUOTED = json.encoder.encode_basestring_ascii  # json.dumps' string quoting (ensure_ascii)


def _canonical(payload: dict[str, str | int | None]) -> str:
    """`json.dumps(payload, sort_keys=True, separators=(",", ":"))`, spelled directly for a flat
    payload of strings, ints and None: dumps builds an encoder per call (with its arguments),
    and even a reused one builds its C encoder per call, most of a fingerprint's cost
    (docs/performance.md, "What changed in the batch path"). Anything else goes to the
    encoder; tests/unit/test_commands.py holds the two equal."""
    parts = []
    for key in sorted(payload):
        value = payload[key]
        if type(value) is str:
            parts.append(f"{_QUOTED(key)}:{_QUOTED(value)}")
        elif type(value) is int:
            parts.append(f"{_QUOTED(key)}:{int.__repr__(value)}")
        elif value is None:
            parts.append(f"{_QUOTED(key)}:null")
        else:
            return _CANONICAL_JSON.encode(payload)
    return "{" + ",".join(parts) + "}"


def _digest(payload: dict[str, str | int | None]) -> str:
    return hashlib.sha256(_canonical(payload).encode("utf-8")).hexdigest()


def accounts_of(command: Command) -> tuple[str, ...]:
    """The ids of the accounts the command reads and changes, without duplicates."""
    # Not `match`, whose class patterns cost more: the batch path asks this of every command.
    if isinstance(command, Transfer):
        source, destination = command.from_account_id, command.to_account_id
        return (source, destination) if source != destination else (source,)
    return (command.account_id,)


def _payload(
    command: Command, amount: Callable[[str], str], with_owner: bool = True
) -> dict[str, str | int | None]:
    match command:
        case OpenAccount():
            opened: dict[str, str | int | None] = {
                "type": "open_account",
                "account_id": command.account_id,
                "currency": command.currency,
            }
            return {**opened, "owner": command.owner} if with_owner else opened
        case Deposit() | Withdraw():
            return {
                "type": "deposit" if isinstance(command, Deposit) else "withdraw",
                "account_id": command.account_id,
                "amount": amount(command.amount),
                "expected_version": command.expected_version,
                **_metadata(command),
            }
        case Transfer():
            return {
                "type": "transfer",
                "from_account_id": command.from_account_id,
                "to_account_id": command.to_account_id,
                "amount": amount(command.amount),
                "expected_version": command.expected_version,
                **_metadata(command),
            }
        case CloseAccount():
            return {
                "type": "close_account",
                "account_id": command.account_id,
                "expected_version": command.expected_version,
            }
        case EraseOwner():
            return {"type": "erase_owner", "account_id": command.account_id}


def _metadata(command: Deposit | Withdraw | Transfer) -> dict[str, str | int | None]:
    """The reference and memo that were given (see `fingerprint`)."""
    given = (("reference", command.reference), ("memo", command.memo))
    return {name: text for name, text in given if text}


class Metadata(TypedDict):
    reference: str
    memo: str


def metadata_of(command: Command) -> Metadata:
    """The command's `reference` and `memo` ("" when not given): only the movements (Deposit,
    Withdraw, Transfer) take them (docs/design.md, decision 16)."""
    if isinstance(command, MOVEMENTS):
        return Metadata(reference=command.reference, memo=command.memo)
    return Metadata(reference="", memo="")
