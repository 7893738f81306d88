"""Combining consistency tokens, so that a session reads all of its writes, not only its last.

A command's token names the position of its own events only (one partition of the event store),
so the token of a deposit on account B does not cover an earlier deposit on account A. Tokens
are opaque to clients in general; the one format the servers issue today, "v1." followed by
unpadded base64url of "partition:offset,...", is merged here (the latest offset per partition).
A token in any other format is not understood, and the newer one is kept as it is.
"""

from __future__ import annotations

import base64
import binascii
import re

_PREFIX = "v1."
_POSITIONS = re.compile(r"[0-9]{1,10}:[0-9]{1,19}(?:,[0-9]{1,10}:[0-9]{1,19})*")


def _positions(token: str) -> dict[int, int] | None:
    if not token.startswith(_PREFIX):
        return None
    body = token.removeprefix(_PREFIX)
    try:
        text = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return None
    if not _POSITIONS.fullmatch(text):
        return None
    pairs = (item.split(":") for item in text.split(","))
    return {int(partition): int(offset) for partition, offset in pairs}


def merge_tokens(older: str | None, newer: str) -> str:
    """A token covered exactly when both are (if both are understood); otherwise `newer`."""
    if not older:
        return newer
    first, second = _positions(older), _positions(newer)
    if first is None or second is None:
        return newer
    for partition, offset in second.items():
        first[partition] = max(offset, first.get(partition, offset))
    compact = ",".join(f"{partition}:{offset}" for partition, offset in sorted(first.items()))
    return _PREFIX + base64.urlsafe_b64encode(compact.encode("ascii")).decode("ascii").rstrip("=")
