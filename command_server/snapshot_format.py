"""The records of the snapshot topic: what they hold and how they are encoded.

A snapshot of one partition is a manifest plus chunks, each one Kafka record keyed by what it
is, so that compaction keeps only the latest of each:

    "<partition>/manifest"         what the snapshot covers and which chunks make it up
    "<partition>/outcomes/<n>"     entries [n * chunk_entries, (n + 1) * chunk_entries) of the
                                   partition's outcome log; immutable once full
    "<partition>/accounts/<n>"     the n-th slice of the partition's accounts, rewritten by every
                                   snapshot and tied to its manifest by `generation`

Values are a checksum (MAGIC, then a BLAKE2b digest of the rest) followed by schemaless Avro
(one record with a union body). Snapshots are a cache private to the command server, never a
contract: a record this code cannot read, or whose checksum fails, is ignored and the partition
replayed from the event log, so the format can change by bumping FORMAT (and MAGIC with it, so
that an older record is refused before it is parsed). Records of formats 1 and 2 are unreadable
to this version: the first start after an upgrade replays the log once. Format 3 added each
partition's dedupe horizon (write_model.py); a format-2 snapshot cannot say what its partition
had forgotten, and guessing (say, the time of its oldest remembered id) could let a forgotten
command through again, since ids are not in time order in the log: only a replay is safe.
Format 4 adds the partition's cross-shard transfers in flight and the position in the transfers
topic they reflect (docs/design.md, decision 13): a format-3 snapshot cannot say which of its
partition's transfers are still in flight.
"""

from __future__ import annotations

import hashlib
import io
import sys
from array import array
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from fastavro import parse_schema, schemaless_reader, schemaless_writer

from command_server import snapshot_writer
from command_server.outcome_log import FINGERPRINT_BYTES, OutcomeColumns
from command_server.snapshot_writer import GrowingChunks, KnownAccounts, little_endian
from ledger.domain.account import Account, AccountStatus
from ledger.domain.saga import InFlight
from ledger.events.direct_writer import NotDirectlyWritable

FORMAT = 4
MAGIC = b"LSS4"
"""Opens every record of this format, before its checksum."""
_DIGEST_BYTES = 16
ACCOUNTS_PER_CHUNK = 10_000

_TIMESTAMP = {"type": "long", "logicalType": "timestamp-millis"}
_STRINGS = {"type": "array", "items": "string"}


def _record(name: str, **field_types: object) -> dict[str, object]:
    """An Avro record schema whose fields, in order, have the given types."""
    fields = [{"name": field, "type": type_} for field, type_ in field_types.items()]
    return {"type": "record", "name": name, "fields": fields}


_ACCOUNT = _record(
    "AccountState",
    account_id="string",
    currency="string",
    owner="string",
    closed="boolean",
    balance="long",
    version="long",
    opened_at=_TIMESTAMP,
    updated_at=_TIMESTAMP,
)
_MANIFEST = _record(
    "Manifest",
    topic="string",
    topic_id="string",
    partition="int",
    partitions="int",
    lineage="string",
    generation="string",
    next_offset="long",
    outcomes_start="long",
    outcomes_end="long",
    account_chunks="int",
    chunk_entries="int",
    horizon_ms="long",
    in_flight={
        "type": "array",
        "items": _record(
            "InFlight",
            transfer_id="string",
            account_id="string",
            counterparty_id="string",
            amount="long",
            fingerprint="string",
        ),
    },
    saga_next_offset="long",
)
_OUTCOME_CHUNK = _record(
    "OutcomeChunk",
    lineage="string",
    first="long",
    command_ids=_STRINGS,
    fingerprints="bytes",
    offsets="bytes",
    versions="bytes",
    tokens=_STRINGS,
)
_ACCOUNT_CHUNK = _record(
    "AccountChunk", generation="string", accounts={"type": "array", "items": _ACCOUNT}
)
_BODIES = [_MANIFEST, _OUTCOME_CHUNK, _ACCOUNT_CHUNK]
_OUTCOMES_BRANCH, _ACCOUNTS_BRANCH = 1, 2
"""The chunks' indexes in the record's body union (_BODIES)."""
_SCHEMA = parse_schema(
    {
        **_record("SnapshotRecord", format="int", body=_BODIES),
        "namespace": "ledger.command_server.snapshot",
    }
)


class UnreadableSnapshot(ValueError):
    """A snapshot record that cannot be used; the partition is replayed from the log instead."""


@dataclass(frozen=True, slots=True)
class Manifest:
    topic: str
    topic_id: str
    partition: int
    partitions: int
    """The topic's partition count when the snapshot was written."""
    lineage: str
    """Which numbering of outcome entries the chunks belong to; new after a full replay."""
    generation: str
    """This snapshot; its account chunks carry the same value."""
    next_offset: int
    """The first offset of the partition the snapshot does not cover."""
    outcomes_start: int
    outcomes_end: int
    account_chunks: int
    chunk_entries: int
    """The size of the partition's outcome chunks (and of what it forgets at a time)."""
    horizon_ms: int
    """The partition's dedupe horizon (WriteModel.horizons); -1: it forgot no UUIDv7 command."""
    in_flight: list[InFlight]
    """Cross-shard transfers from the partition's accounts whose money is in flight."""
    saga_next_offset: int
    """The first offset of the partition of the transfers topic that `in_flight` does not
    reflect (its Credited notices were not processed)."""


@dataclass(frozen=True, slots=True)
class OutcomeChunk:
    lineage: str
    columns: OutcomeColumns


@dataclass(frozen=True, slots=True)
class AccountChunk:
    generation: str
    accounts: list[Account]


Body = Manifest | OutcomeChunk | AccountChunk


def manifest_key(partition: int) -> str:
    return f"{partition}/manifest"


def outcomes_key(partition: int, chunk: int) -> str:
    return f"{partition}/outcomes/{chunk}"


def accounts_key(partition: int, chunk: int) -> str:
    return f"{partition}/accounts/{chunk}"


def partition_of_key(key: str) -> int | None:
    head, _, _ = key.partition("/")
    return int(head) if head.isdigit() else None


def encode(body: Body, memory: Memory | None = None) -> bytes:
    """The record's value; `memory`, if given, keeps what the next snapshots encode again (the
    same bytes either way)."""
    try:
        data = _directly(body, memory or _NO_MEMORY)
    except NotDirectlyWritable:
        data = None
    if data is None:
        data = by_fastavro(body)
    return MAGIC + _digest(data) + data


@dataclass(frozen=True, slots=True)
class Memory:
    """What a snapshot writer's encoding keeps from one snapshot to the next (snapshot_writer)."""

    growing: GrowingChunks | None = field(default_factory=GrowingChunks)
    known: KnownAccounts | None = field(default_factory=KnownAccounts)


_NO_MEMORY = Memory(None, None)


def _directly(body: Body, memory: Memory) -> bytes | None:
    """The chunks' record written directly (the same bytes as fastavro's); None for a manifest,
    one per partition per snapshot, which fastavro writes."""
    match body:
        case OutcomeChunk(lineage=lineage, columns=columns):
            return snapshot_writer.outcome_chunk(
                FORMAT, _OUTCOMES_BRANCH, lineage, columns, memory.growing
            )
        case AccountChunk(generation=generation, accounts=accounts):
            return snapshot_writer.account_chunk(
                FORMAT, _ACCOUNTS_BRANCH, generation, accounts, memory.known
            )
    return None


def by_fastavro(body: Body) -> bytes:
    """The record's Avro (after MAGIC and the checksum), written by fastavro."""
    out = io.BytesIO()
    schemaless_writer(out, _SCHEMA, {"format": FORMAT, "body": _to_datum(body)})
    return out.getvalue()


def _digest(data: bytes) -> bytes:
    return hashlib.blake2b(data, digest_size=_DIGEST_BYTES).digest()


def decode(value: bytes) -> Body:
    if not value.startswith(MAGIC):
        raise UnreadableSnapshot(
            "not of this format (written by an older version, or not a snapshot)"
        )
    head = len(MAGIC) + _DIGEST_BYTES
    data = value[head:]
    if _digest(data) != value[len(MAGIC) : head]:
        raise UnreadableSnapshot("checksum mismatch: the record is corrupt")
    try:
        datum: Any = schemaless_reader(io.BytesIO(data), _SCHEMA, None)
    except Exception as exc:
        raise UnreadableSnapshot(f"not a snapshot record of this version: {exc!r}") from exc
    if datum["format"] != FORMAT:
        raise UnreadableSnapshot(f"snapshot format {datum['format']}, this server reads {FORMAT}")
    return _from_datum(datum["body"])


def _to_datum(body: Body) -> tuple[str, dict[str, Any]]:
    match body:
        case Manifest():
            return ("ledger.command_server.snapshot.Manifest", _fields(body))
        case OutcomeChunk(lineage=lineage, columns=columns):
            return (
                "ledger.command_server.snapshot.OutcomeChunk",
                {
                    "lineage": lineage,
                    "first": columns.first,
                    "command_ids": columns.command_ids,
                    "fingerprints": columns.fingerprints,
                    "offsets": little_endian(columns.offsets),
                    "versions": little_endian(columns.versions),
                    "tokens": columns.tokens,
                },
            )
        case AccountChunk(generation=generation, accounts=accounts):
            return (
                "ledger.command_server.snapshot.AccountChunk",
                {"generation": generation, "accounts": [_account_datum(a) for a in accounts]},
            )


def _from_datum(datum: dict[str, Any]) -> Body:
    if "next_offset" in datum:
        in_flight = [InFlight(**t) for t in datum.pop("in_flight")]
        return Manifest(**datum, in_flight=in_flight)
    if "command_ids" in datum:
        ids: list[str] = datum["command_ids"]
        tokens: list[str] = datum["tokens"]
        offsets, versions = _words(datum["offsets"]), _words(datum["versions"])
        fingerprints: bytes = datum["fingerprints"]
        lengths = {len(ids), len(offsets), len(versions), len(tokens)}
        if lengths != {len(fingerprints) / FINGERPRINT_BYTES}:
            raise UnreadableSnapshot("outcome chunk with columns of different lengths")
        columns = OutcomeColumns(datum["first"], ids, fingerprints, offsets, versions, tokens)
        return OutcomeChunk(datum["lineage"], columns)
    return AccountChunk(datum["generation"], [_account(a) for a in datum["accounts"]])


def _fields(manifest: Manifest) -> dict[str, Any]:
    fields = {name: getattr(manifest, name) for name in Manifest.__slots__}
    fields["in_flight"] = [_in_flight_datum(t) for t in manifest.in_flight]
    return fields


def _in_flight_datum(transfer: InFlight) -> dict[str, Any]:
    return {name: getattr(transfer, name) for name in InFlight.__slots__}


def _account_datum(account: Account) -> dict[str, Any]:
    return {
        "account_id": account.account_id,
        "currency": account.currency,
        # Deciding never needs the owner, and a snapshot must not keep what an erasure forgets
        # (docs/design.md, decision 14): the field stays, always empty.
        "owner": "",
        "closed": account.status is AccountStatus.CLOSED,
        "balance": account.balance,
        "version": account.version,
        "opened_at": account.opened_at,
        "updated_at": account.updated_at,
    }


def _account(datum: dict[str, Any]) -> Account:
    opened_at: datetime = datum["opened_at"]
    updated_at: datetime = datum["updated_at"]
    return Account(
        datum["account_id"],
        datum["currency"],
        "",
        AccountStatus.CLOSED if datum["closed"] else AccountStatus.OPEN,
        datum["balance"],
        datum["version"],
        opened_at,
        updated_at,
    )


def _words(data: bytes) -> array[int]:
    if len(data) % 8:
        raise UnreadableSnapshot("a column of 64-bit words with a partial word")
    words = array("q")
    words.frombytes(data)
    if sys.byteorder != "little":
        words.byteswap()
    return words
