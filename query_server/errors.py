"""Why a query fails. Each class maps to exactly one gRPC status code at the API edge."""

from __future__ import annotations


class QueryFailed(Exception):
    """Base of the refusals below; the message is shown to the caller, so it says what to fix."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class InvalidArgument(QueryFailed):
    """The request is malformed whatever the read model holds."""


class NotFound(QueryFailed):
    """The account the request names does not exist in the read model (yet)."""


class NotCovered(QueryFailed):
    """The read model did not reach the requested consistency token within the time allowed."""


class Unavailable(QueryFailed):
    """The read model cannot be reached or is not ready; retrying later may succeed."""


class ResourceExhausted(QueryFailed):
    """The server is at one of its limits (calls waiting, streams); retrying later may succeed."""


class PermissionDenied(QueryFailed):
    """The caller's token may not read what the request named, which only the read model could
    tell (the policy table, ledger/auth/policy.py, decides the rest before the call)."""
