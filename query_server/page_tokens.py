"""Page tokens: opaque to callers, bound to the listing and the filters they were issued for.

A token is base64url (unpadded) of a small JSON document: a format version, a fingerprint of the
listing's name and filters, and the sort key of the last row returned (keyset pagination). The
fingerprint lets us refuse a token replayed with other filters, which would silently skip or
repeat rows. Tokens are not signed: a forged key only moves where a listing the caller may read
anyway starts.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
from collections.abc import Mapping

from query_server.errors import InvalidArgument

_VERSION = 1
_MAX_TOKEN_LENGTH = 512
_FINGERPRINT_BYTES = 9

Filters = Mapping[str, str | int | None]
"""What a listing was asked for, except the page size and the position (which may change)."""

Key = tuple[str | int, ...]
"""The sort key of the last row of a page; the next page starts strictly after it."""


class PageTokens:
    """Issues and checks the page tokens of one listing, whose sort key has `key_types`."""

    def __init__(self, listing: str, key_types: tuple[type[str] | type[int], ...]) -> None:
        self.listing = listing
        self._key_types = key_types

    def encode(self, filters: Filters, after: Key) -> str:
        document = {"v": _VERSION, "f": self._fingerprint(filters), "k": list(after)}
        text = json.dumps(document, separators=(",", ":")).encode()
        return base64.urlsafe_b64encode(text).decode("ascii").rstrip("=")

    def decode(self, token: str, filters: Filters) -> Key:
        """The key a token resumes after; InvalidArgument if it is malformed or was issued for
        another listing or other filters."""
        if len(token) > _MAX_TOKEN_LENGTH:
            raise InvalidArgument(f"page_token is too long ({len(token)} characters)")
        try:
            raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
            document = json.loads(raw)
        except (binascii.Error, ValueError):
            raise InvalidArgument(
                "page_token is malformed: pass the next_page_token of the previous page as is"
            ) from None
        if not isinstance(document, dict) or document.get("v") != _VERSION:
            raise InvalidArgument("page_token is malformed or from an incompatible version")
        if document.get("f") != self._fingerprint(filters):
            raise InvalidArgument(
                f"page_token was issued for a different {self.listing} query: every parameter "
                "except page_size and consistency_token must be the same as in the call that "
                "returned it"
            )
        key = document.get("k")
        if not (
            isinstance(key, list)
            and len(key) == len(self._key_types)
            and all(type(part) is kind for part, kind in zip(key, self._key_types, strict=True))
        ):
            raise InvalidArgument("page_token is malformed: unexpected position")
        return tuple(key)

    def _fingerprint(self, filters: Filters) -> str:
        canonical = json.dumps([self.listing, dict(filters)], sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(canonical.encode()).digest()[:_FINGERPRINT_BYTES]
        return base64.urlsafe_b64encode(digest).decode("ascii")


ACCOUNTS = PageTokens("ListAccounts", (str,))
TRANSACTIONS = PageTokens("ListTransactions", (int,))
# Day as a proleptic Gregorian ordinal, then account id.
DAILY_SUMMARIES = PageTokens("GetDailySummaries", (int, str))
BALANCES_AT = PageTokens("ListBalancesAt", (str,))
