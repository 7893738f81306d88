"""Checks on a command's fields that need no account state (they fail with INVALID)."""

from __future__ import annotations

import re

from ledger.domain.rejection import Rejection, RejectionKind

MAX_COMMAND_ID_LENGTH = 128
MAX_OWNER_LENGTH = 200
ACCOUNT_ID_PATTERN = re.compile(r"[A-Za-z0-9._:-]{1,64}")


def require_command_id(command_id: str) -> None:
    if not command_id:
        raise Rejection(
            RejectionKind.INVALID, "command_id is required: the command's idempotency key"
        )
    if len(command_id) > MAX_COMMAND_ID_LENGTH:
        raise Rejection(
            RejectionKind.INVALID,
            f"command_id is too long: {len(command_id)} characters, at most "
            f"{MAX_COMMAND_ID_LENGTH}",
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
