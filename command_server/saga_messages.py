"""The transfers topic: the messages shards send each other to carry cross-shard transfers.

`<event topic>.transfers` has the event topic's partition count and retention (kept forever:
a request that waits for a shard must not expire), and each message is keyed by the account
whose shard must act next, so that it lands in a partition of that shard:

    CreditRequested  key: the credited account   (debiting shard -> crediting shard)
    CreditRefused    key: the debited account    (crediting shard -> debiting shard: refund)
    Credited         key: the debited account    (crediting shard -> debiting shard: done)

These are private to the command servers, never read by anything else, so they are a compact
documented encoding rather than a registry schema: UTF-8 JSON objects with a format number
`v` (1), the kind `k` ("request", "refused", "credited"), the transfer id `t`, the accounts
`from` and `to`, and for a request the amount `a` (integer minor units), currency `c` and the
Transfer's fingerprint `h`, for a refusal its reason `r`. A message this code cannot read stops
the writer (UnreadableLog), as an undecodable event does: skipping it could lose money.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, TypeAlias

from ledger.domain.saga import CreditRequest

FORMAT = 1


def transfers_topic_name(event_topic: str) -> str:
    return f"{event_topic}.transfers"


def saga_group(event_topic: str) -> str:
    """The consumer group under which each shard commits, in its transactions, how far it
    processed its partitions of the transfers topic (no member ever joins it)."""
    return f"{transfers_topic_name(event_topic)}.saga"


@dataclass(frozen=True, slots=True)
class CreditRefused:
    transfer_id: str
    from_account_id: str
    to_account_id: str
    reason: str


@dataclass(frozen=True, slots=True)
class Credited:
    transfer_id: str
    from_account_id: str
    to_account_id: str


SagaMessage: TypeAlias = CreditRequest | CreditRefused | Credited


class UnreadableSagaMessage(ValueError):
    """Bytes of the transfers topic that are not a message of this format."""


def message_key(message: SagaMessage) -> str:
    """The account whose shard acts on `message` next."""
    return message.to_account_id if isinstance(message, CreditRequest) else message.from_account_id


def encode(message: SagaMessage) -> bytes:
    body: dict[str, Any] = {
        "v": FORMAT,
        "t": message.transfer_id,
        "from": message.from_account_id,
        "to": message.to_account_id,
    }
    match message:
        case CreditRequest():
            body |= {"k": "request", "a": message.amount, "c": message.currency}
            body["h"] = message.fingerprint
        case CreditRefused():
            body |= {"k": "refused", "r": message.reason}
        case Credited():
            body["k"] = "credited"
    return json.dumps(body, separators=(",", ":"), sort_keys=True).encode()


def decode(value: bytes) -> SagaMessage:
    try:
        body = json.loads(value)
        if body["v"] != FORMAT:
            raise UnreadableSagaMessage(f"format {body['v']}, this server reads {FORMAT}")
        ids = (str(body["t"]), str(body["from"]), str(body["to"]))
        kind = body["k"]
        if kind == "request":
            amount = body["a"]
            if not isinstance(amount, int) or amount <= 0:
                raise UnreadableSagaMessage(f"amount {amount!r} is not a positive integer")
            return CreditRequest(*ids, amount, str(body["c"]), str(body["h"]))
        if kind == "refused":
            return CreditRefused(*ids, str(body["r"]))
        if kind == "credited":
            return Credited(*ids)
    except UnreadableSagaMessage:
        raise
    except (ValueError, KeyError, TypeError) as exc:
        raise UnreadableSagaMessage(f"not a transfers-topic message: {exc!r}") from None
    raise UnreadableSagaMessage(f"unknown kind {kind!r}")
