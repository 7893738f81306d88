"""Writes the snapshot chunks' Avro bodies without fastavro: the very bytes fastavro writes.

Encoding the chunks through fastavro (a dict per account, the schema walked for every one) was
most of the snapshot thread's time, which it takes from the writer's main thread under their
shared interpreter lock (docs/performance.md, "Batches (issue 22)", "Snapshots"). This module
writes an outcome chunk's and an account chunk's record (`snapshot_format._SCHEMA`: the format,
the union's branch, then the body's fields in order) straight from the columns and the accounts:
longs as zigzag varints, strings and bytes after their length, an array as one block (its count,
the items, then 0) as fastavro writes it.

Anything it does not write as fastavro would (a long outside 64 bits, a string that is not
UTF-8-encodable, a naive datetime, which fastavro reads as local time) raises
NotDirectlyWritable, and snapshot_format.encode leaves the record to fastavro, which fails, or
not, as before. tests/unit/test_snapshot_writer.py holds the bytes equal to fastavro's.
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

from command_server.outcome_log import OutcomeColumns
from ledger.domain.account import Account, AccountStatus
from ledger.events.direct_writer import NotDirectlyWritable, _long, _string

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_MILLISECOND = timedelta(milliseconds=1)
_SHORT = 64
"""Strings shorter than this have a one-byte length (the zigzag varint of 2 * length < 128)."""


def outcome_chunk(
    format_: int,
    branch: int,
    lineage: str,
    columns: OutcomeColumns,
    growing: GrowingChunks | None = None,
) -> bytes:
    """The record of an OutcomeChunk: `format_`, the union's `branch`, then its fields;
    `growing` remembers the string columns already encoded."""
    out = _head(format_, branch, lineage)
    try:
        _long(out, columns.first)
        if growing is None:
            ids, tokens = _items(columns.command_ids), _items(columns.tokens)
        else:
            ids, tokens = growing.items(lineage, columns)
        _array(out, len(columns.command_ids), ids)
        _bytes(out, columns.fingerprints)
        _bytes(out, little_endian(columns.offsets))
        _bytes(out, little_endian(columns.versions))
        _array(out, len(columns.tokens), tokens)
    except (TypeError, UnicodeEncodeError) as exc:
        raise NotDirectlyWritable(repr(exc)) from None
    return bytes(out)


class GrowingChunks:
    """The encoded string columns (ids and tokens) of each lineage's latest outcome chunk.

    Every snapshot writes a partition's last outcome chunk again, with the entries added since
    (chunks are immutable only once full), so with six partitions a snapshot every 10,000
    events wrote about four entries per event. The entries already encoded keep their bytes
    when the chunk comes again with the same ones first (the lists compare equal, at memory
    speed: mostly the same string objects), and only the rest are encoded.
    """

    def __init__(self) -> None:
        self._latest: dict[str, tuple[int, list[str], list[str], bytes, bytes]] = {}

    def items(self, lineage: str, columns: OutcomeColumns) -> tuple[bytes, bytes]:
        """`columns`' ids and tokens as the arrays' items (`_items`)."""
        ids, tokens = columns.command_ids, columns.tokens
        done, id_items, token_items = 0, b"", b""
        latest = self._latest.get(lineage)
        if latest is not None:
            first, known_ids, known_tokens, known_id_items, known_token_items = latest
            known = len(known_ids)
            if (
                first == columns.first
                and ids[:known] == known_ids
                and tokens[:known] == known_tokens
            ):
                done, id_items, token_items = known, known_id_items, known_token_items
        if done < len(ids):
            id_items += _items(ids[done:])
            token_items += _items(tokens[done:])
        self._latest[lineage] = (columns.first, ids, tokens, id_items, token_items)
        return id_items, token_items


def account_chunk(
    format_: int,
    branch: int,
    generation: str,
    accounts: list[Account],
    known: KnownAccounts | None = None,
) -> bytes:
    """The record of an AccountChunk: `format_`, the union's `branch`, then its fields;
    `known` remembers each account's fields that do not change."""
    out = _head(format_, branch, generation)
    if accounts:
        _long(out, len(accounts))
        closed = AccountStatus.CLOSED
        heads = KnownAccounts(0) if known is None else known
        try:
            for account in accounts:
                _, _, head, opened = heads.of(account)
                out += head
                out.append(account.status is closed)
                _long(out, account.balance)
                _long(out, account.version)
                out += opened
                _long(out, _millis(account.updated_at))
        except (TypeError, AttributeError, UnicodeEncodeError) as exc:
            raise NotDirectlyWritable(repr(exc)) from None
    out.append(0)
    return bytes(out)


_Known = tuple[str, datetime, bytes, bytes]


class KnownAccounts:
    """Per account, what its record starts with (id, currency, the empty owner) and when it
    opened, encoded: they never change, and half an account's encoding is theirs. Used while
    the account's currency and opening time are the very objects they were made from (every
    version of an account shares them); at most `limit` accounts (about 100 bytes each), the
    others encoded in full every time."""

    def __init__(self, limit: int = 100_000) -> None:
        self._known: dict[str, _Known] = {}
        self._limit = limit

    def of(self, account: Account) -> _Known:
        known = self._known.get(account.account_id)
        if known is None or known[0] is not account.currency or known[1] is not account.opened_at:
            head = bytearray()
            _string(head, account.account_id)
            _string(head, account.currency)
            # The owner: always empty in a snapshot (snapshot_format._account_datum).
            head.append(0)
            opened = bytearray()
            _long(opened, _millis(account.opened_at))
            known = (account.currency, account.opened_at, bytes(head), bytes(opened))
            if len(self._known) < self._limit or account.account_id in self._known:
                self._known[account.account_id] = known
        return known


def _millis(moment: datetime) -> int:
    """fastavro's timestamp-millis of an aware datetime; a naive one raises TypeError."""
    return (moment - _EPOCH) // _MILLISECOND


def _head(format_: int, branch: int, name: str) -> bytearray:
    """The record's format and union branch, then the body's first field, a string."""
    out = bytearray()
    _long(out, format_)
    _long(out, branch)
    try:
        _string(out, name)
    except UnicodeEncodeError as exc:
        raise NotDirectlyWritable(repr(exc)) from None
    return out


def _array(out: bytearray, count: int, items: bytes) -> None:
    """An Avro array of `count` items already encoded: one block, then 0."""
    if count:
        _long(out, count)
        out += items
    out.append(0)


def _items(values: Sequence[str]) -> bytes:
    """Each string after its length. Ids and tokens are short ASCII: then every length is one
    byte, and the whole block is one ASCII text encoded at once."""
    if not values:
        return b""
    try:
        if max(map(len, values)) < _SHORT:
            lengths = map(chr, map((2).__mul__, map(len, values)))
            return "".join(map(str.__add__, lengths, values)).encode("ascii")
    except (TypeError, UnicodeEncodeError):
        pass  # not all str, or not all ASCII: one at a time, as fastavro checks them
    out = bytearray()
    for value in values:
        _string(out, value)
    return bytes(out)


def _bytes(out: bytearray, value: bytes) -> None:
    _long(out, len(value))
    out += value


def little_endian(words: array[int]) -> bytes:
    """64-bit words as the snapshot stores them, whatever the machine's byte order."""
    if sys.byteorder == "little":
        return words.tobytes()
    swapped = array("q", words)
    swapped.byteswap()
    return swapped.tobytes()
