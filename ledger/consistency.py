"""Consistency tokens: an opaque, URL-safe name for a position in the event store.

A command response carries the position of its last event; a query waits until the read model's
checkpoints cover the token it is given; a query response names the checkpoints it reflects.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

_PREFIX = "v1."
_MAX_TOKEN_LENGTH = 4096
_BASE64URL = re.compile(r"[A-Za-z0-9_-]*")
_POSITIONS = re.compile(r"[0-9]{1,10}:[0-9]{1,19}(?:,[0-9]{1,10}:[0-9]{1,19})*")
_MAX_PARTITION = 2**31 - 1
_MAX_OFFSET = 2**63 - 1
_URL_SAFE = bytes.maketrans(b"+/", b"-_")


@dataclass(frozen=True, eq=True)
class ConsistencyToken:
    """For each partition, the offset of the last event that must be visible."""

    positions: Mapping[int, int]

    def __post_init__(self) -> None:
        for partition, offset in self.positions.items():
            if not (0 <= partition <= _MAX_PARTITION and 0 <= offset <= _MAX_OFFSET):
                raise ValueError(f"invalid position {partition}:{offset}: out of Kafka's range")
        # A private sorted copy: the token must not change if the caller's dict does.
        frozen = MappingProxyType(dict(sorted(self.positions.items())))
        object.__setattr__(self, "positions", frozen)

    def __hash__(self) -> int:
        return hash(frozenset(self.positions.items()))

    @classmethod
    def at(cls, partition: int, offset: int) -> ConsistencyToken:
        """The token for one event's position."""
        return cls({partition: offset})

    @classmethod
    def union(cls, tokens: Iterable[ConsistencyToken]) -> ConsistencyToken:
        """The token covered exactly when all of `tokens` are (the latest offset per partition)."""
        positions: dict[int, int] = {}
        for token in tokens:
            for partition, offset in token.positions.items():
                positions[partition] = max(offset, positions.get(partition, offset))
        return cls(positions)

    def merge(self, other: ConsistencyToken) -> ConsistencyToken:
        """The token covered exactly when both `self` and `other` are."""
        return ConsistencyToken.union((self, other))

    def covered_by(self, checkpoints: Mapping[int, int]) -> bool:
        """Whether a reader that has applied each partition up to `checkpoints[partition]`
        (the offset of its last applied event) has seen every event this token names."""
        return all(
            partition in checkpoints and checkpoints[partition] >= offset
            for partition, offset in self.positions.items()
        )

    def encode(self) -> str:
        return encode_positions(self.positions)

    @classmethod
    def decode(cls, text: str) -> ConsistencyToken:
        """Parse a token made by `encode`. Raises ValueError, saying what is wrong, otherwise."""
        if not text.startswith(_PREFIX):
            raise ValueError(f"not a consistency token (expected the {_PREFIX!r} prefix)")
        if len(text) > _MAX_TOKEN_LENGTH:
            raise ValueError(f"consistency token is too long ({len(text)} characters)")
        body = text.removeprefix(_PREFIX)
        # b64decode skips characters outside the alphabet, so check them first.
        if _BASE64URL.fullmatch(body) is None:
            raise ValueError("malformed consistency token: not base64url after the prefix")
        try:
            compact = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)).decode("ascii")
        except (binascii.Error, UnicodeDecodeError):
            raise ValueError("malformed consistency token: undecodable body") from None
        if compact and _POSITIONS.fullmatch(compact) is None:
            raise ValueError("malformed consistency token: not a partition:offset list")
        pairs = [_position(pair) for pair in compact.split(",")] if compact else []
        positions = dict(pairs)
        if len(positions) != len(pairs):
            raise ValueError("malformed consistency token: a partition appears twice")
        return cls(positions)

    def __str__(self) -> str:
        return self.encode()


def encode_positions(positions: Mapping[int, int]) -> str:
    """`ConsistencyToken(positions).encode()` for positions known to be in Kafka's range (offsets
    Kafka gave), without building and checking the token: the writer answers every command with
    one (docs/performance.md, "What changed in the batch path")."""
    if len(positions) == 1:
        # Nearly every command's: no sorting or joining.
        ((partition, offset),) = positions.items()
        compact = f"{partition}:{offset}"
    else:
        compact = ",".join(f"{p}:{o}" for p, o in sorted(positions.items()))
    # base64url as `base64.urlsafe_b64encode` spells it, without its Python wrappers.
    body = binascii.b2a_base64(compact.encode("ascii"), newline=False).translate(_URL_SAFE)
    # Padding carries no information and would need escaping in URLs.
    return _PREFIX + body.decode("ascii").rstrip("=")


def _position(pair: str) -> tuple[int, int]:
    partition, offset = pair.split(":")
    return int(partition), int(offset)
