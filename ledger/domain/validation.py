"""Checks on a command's fields that need no account state (they fail with INVALID).

`require_fields` is every such check of one command: `decide` runs it, and so does the command
server's gRPC process before a command crosses the pipe to the writer. The gRPC process also
runs `require_command_id`, which needs the server's clock: a command id is a UUIDv7.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import UTC, datetime, timedelta
from functools import lru_cache

from ledger.command_ids import command_id_millis, millis_time
from ledger.domain.commands import (
    CloseAccount,
    Command,
    Deposit,
    EraseOwner,
    OpenAccount,
    Transfer,
    Withdraw,
)
from ledger.domain.money import currency_exponent, require_positive_decimal
from ledger.domain.rejection import Rejection, RejectionKind

MAX_COMMAND_ID_LENGTH = 128
MAX_OWNER_LENGTH = 200
MAX_REFERENCE_LENGTH = 64
"""A movement's reference: room for any payment system's id (a UUID, an ISO 20022
EndToEndId of 35); with the memo's limit, 8,000 of the largest transfers still fit in one
ExecuteBatch (tests/unit/test_batch_limits.py)."""
MAX_MEMO_LENGTH = 128
"""A movement's memo: a remittance line, not a document."""
MAX_CURRENCY_LENGTH = 3
ACCOUNT_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_HOW_TO_MAKE_ONE = (
    "make a new UUIDv7 for each command (Python: ledger.command_ids.new_command_id(); "
    'other languages: README, "Command ids")'
)

# Free text is shown to people and stored in PostgreSQL `text` (which cannot hold NUL): no
# control characters (Cc), no invisible formatting (Cf: bidi overrides and marks, zero-width
# space, BOM, soft hyphen), no line or paragraph separators (Zl, Zp), no surrogates or private
# use (Cs, Co). Kept: ZWNJ and ZWJ, which names in Persian and Indic scripts and emoji need.
_REFUSED_CATEGORIES = frozenset({"Cc", "Cf", "Cs", "Co", "Zl", "Zp"})
_ALLOWED_FORMAT_CHARACTERS = frozenset("\u200c\u200d")
_SHOWN = 80
"""How much of a refused value a message repeats."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_LAST_MILLIS = (datetime.max.replace(tzinfo=UTC) - _EPOCH) // _MILLISECOND


def require_command_id(command_id: str, now: datetime, max_skew: timedelta) -> None:
    """A UUIDv7 in canonical text form whose time is not more than `max_skew` after `now`.

    The id's time decides whether a retry the server no longer remembers is refused as too old
    (docs/design.md, decision 4): an id from the future would later move that horizon past
    every client's clock, so it is refused here, where the command arrives.
    """
    if not command_id:
        raise Rejection(
            RejectionKind.INVALID,
            f"command_id is required: the command's idempotency key; {_HOW_TO_MAKE_ONE}",
        )
    millis = command_id_millis(command_id)
    if millis is None:
        shown = command_id if len(command_id) <= 40 else command_id[:40] + "..."
        raise Rejection(
            RejectionKind.INVALID,
            f"command_id {shown!r} is not a UUIDv7 in canonical form (36 lowercase hex digits "
            f"and hyphens, version 7): {_HOW_TO_MAKE_ONE}",
        )
    if millis > _latest_millis(now, max_skew):
        raise Rejection(
            RejectionKind.INVALID,
            f"command_id {command_id!r} was made {_made_at(millis)}, more than "
            f"{max_skew.total_seconds():g} s after the server's clock ({now.isoformat()}): "
            "check the client's clock",
        )


@lru_cache(maxsize=4)
def _latest_millis(now: datetime, max_skew: timedelta) -> int:
    """The latest time an id may carry at `now`, in milliseconds since the epoch (an id's time
    is whole milliseconds, so `made - now > max_skew` is `millis` above this). A batch checks
    every id against one `now`: worked out once, rather than a datetime built per id."""
    return (now + max_skew - _EPOCH) // _MILLISECOND


def _made_at(millis: int) -> str:
    # 48 bits of milliseconds reach the year 10889; a datetime stops at 9999 (such an id was
    # answered INTERNAL, its refusal failing to say when it was made).
    return (
        f"at {millis_time(millis).isoformat()}" if millis <= _LAST_MILLIS else "after the year 9999"
    )


def require_account_id(account_id: str, field: str) -> None:
    """`field` names the request field, so the message points at what to fix."""
    if ACCOUNT_ID_PATTERN.fullmatch(account_id) is None:
        shown = account_id if len(account_id) <= _SHOWN else account_id[:_SHOWN] + "..."
        raise Rejection(
            RejectionKind.INVALID,
            f"{field} {shown!r} is not a valid account id: use 1 to 64 letters, digits, "
            "'.', '_', ':' or '-'",
        )


def require_owner(owner: str) -> None:
    require_text(owner, "owner", MAX_OWNER_LENGTH)


def require_text(text: str, field: str, limit: int) -> None:
    """Free text of at most `limit` characters, all printable (`require_printable`)."""
    if len(text) > limit:
        raise Rejection(
            RejectionKind.INVALID,
            f"{field} is too long: {len(text)} characters, at most {limit}",
        )
    require_printable(text, field)


def require_printable(text: str, field: str) -> None:
    """Refuse `text` if it holds a character that cannot be shown or stored as text (above)."""
    if text.isprintable():
        return  # the common case, in C: isprintable() is False for every refused category
    for position, character in enumerate(text):
        if (
            unicodedata.category(character) in _REFUSED_CATEGORIES
            and character not in _ALLOWED_FORMAT_CHARACTERS
        ):
            raise Rejection(
                RejectionKind.INVALID,
                f"{field} contains the invisible or control character "
                f"U+{ord(character):04X} at position {position}: use printable text only",
            )


def require_currency(currency: str, field: str = "currency") -> None:
    """An ISO 4217 code the ledger knows (money.py), checked for length before it is looked up."""
    if len(currency) > MAX_CURRENCY_LENGTH:
        raise Rejection(
            RejectionKind.INVALID,
            f"{field} is too long ({len(currency)} characters): expected an ISO 4217 code "
            "such as 'USD' or 'EUR'",
        )
    currency_exponent(currency)


def require_expected_version(expected_version: int | None) -> None:
    if expected_version is not None and expected_version < 1:
        raise Rejection(
            RejectionKind.INVALID,
            f"expected_version must be at least 1 (an account starts at version 1), "
            f"got {expected_version}",
        )


def require_metadata(command: Deposit | Withdraw | Transfer) -> None:
    """A movement's optional `reference` and `memo`."""
    require_text(command.reference, "reference", MAX_REFERENCE_LENGTH)
    require_text(command.memo, "memo", MAX_MEMO_LENGTH)


def require_fields(command: Command) -> None:
    """Every check of `command` that needs no account state, in the order of its fields."""
    # What decide needs of any id (its format and time are checked by `require_command_id` at
    # the edge): one that can be stored with the events and in the read model.
    if not command.command_id:
        raise Rejection(
            RejectionKind.INVALID,
            f"command_id is required: the command's idempotency key; {_HOW_TO_MAKE_ONE}",
        )
    if len(command.command_id) > MAX_COMMAND_ID_LENGTH:
        raise Rejection(
            RejectionKind.INVALID,
            f"command_id is too long: {len(command.command_id)} characters, at most "
            f"{MAX_COMMAND_ID_LENGTH}",
        )
    require_printable(command.command_id, "command_id")
    match command:
        case OpenAccount():
            require_account_id(command.account_id, "account_id")
            require_currency(command.currency)
            require_owner(command.owner)
        case Deposit() | Withdraw():
            require_account_id(command.account_id, "account_id")
            require_positive_decimal(command.amount)
            require_expected_version(command.expected_version)
            require_metadata(command)
        case Transfer():
            require_account_id(command.from_account_id, "from_account_id")
            require_account_id(command.to_account_id, "to_account_id")
            if command.from_account_id == command.to_account_id:
                raise Rejection(
                    RejectionKind.INVALID,
                    f"cannot transfer from account {command.from_account_id!r} to itself",
                )
            require_positive_decimal(command.amount)
            require_expected_version(command.expected_version)
            require_metadata(command)
        case CloseAccount():
            require_account_id(command.account_id, "account_id")
            require_expected_version(command.expected_version)
        case EraseOwner():
            require_account_id(command.account_id, "account_id")
