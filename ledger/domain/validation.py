"""Checks on a command's fields that need no account state (they fail with INVALID)."""

from __future__ import annotations

import re
from datetime import datetime, timedelta

from ledger.command_ids import command_id_millis, millis_time
from ledger.domain.rejection import Rejection, RejectionKind

MAX_OWNER_LENGTH = 200
ACCOUNT_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")
_HOW_TO_MAKE_ONE = (
    "make a new UUIDv7 for each command (Python: ledger.command_ids.new_command_id(); "
    'other languages: README, "Command ids")'
)


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
    made = millis_time(millis)
    if made - now > max_skew:
        raise Rejection(
            RejectionKind.INVALID,
            f"command_id {command_id!r} was made at {made.isoformat()}, more than "
            f"{max_skew.total_seconds():g} s after the server's clock ({now.isoformat()}): "
            "check the client's clock",
        )


def require_account_id(account_id: str, field: str) -> None:
    """`field` names the request field, so the message points at what to fix."""
    if ACCOUNT_ID_PATTERN.fullmatch(account_id) is None:
        shown = account_id if len(account_id) <= 80 else account_id[:80] + "..."
        raise Rejection(
            RejectionKind.INVALID,
            f"{field} {shown!r} is not a valid account id: use 1 to 64 letters, digits, "
            "'.', '_', ':' or '-'",
        )


def require_owner(owner: str) -> None:
    if len(owner) > MAX_OWNER_LENGTH:
        raise Rejection(
            RejectionKind.INVALID,
            f"owner is too long: {len(owner)} characters, at most {MAX_OWNER_LENGTH}",
        )


def require_expected_version(expected_version: int | None) -> None:
    if expected_version is not None and expected_version < 1:
        raise Rejection(
            RejectionKind.INVALID,
            f"expected_version must be at least 1 (an account starts at version 1), "
            f"got {expected_version}",
        )
