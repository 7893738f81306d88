"""Why a command was refused, in terms a caller can act on."""

from __future__ import annotations

import enum


class RejectionKind(enum.Enum):
    """The class of refusal; each maps to one gRPC status code at the API edge."""

    INVALID = "invalid"
    """The command is malformed whatever the state: bad id, unknown currency, bad amount."""
    NOT_FOUND = "not_found"
    """An account the command needs does not exist."""
    ALREADY_EXISTS = "already_exists"
    """The account id has been used before (even if that account is closed)."""
    PRECONDITION = "precondition"
    """The rules forbid it now: insufficient funds, closed account, non-zero close, currency
    mismatch."""
    VERSION_CONFLICT = "version_conflict"
    """`expected_version` does not match the account's current version."""


class Rejection(Exception):
    """A command the ledger refuses. `message` names the values involved so a person can fix it."""

    def __init__(self, kind: RejectionKind, message: str) -> None:
        super().__init__(message)
        self.kind = kind
        self.message = message

    def __repr__(self) -> str:
        return f"Rejection({self.kind.name}, {self.message!r})"
