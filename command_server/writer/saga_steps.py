"""The writer's part in cross-shard transfers: the messages of its partitions of the transfers
topic go through the same decide/commit path as client commands (docs/design.md, decision 13).

Every read of the inbox is decided against the write model (overlaid with what earlier
messages of the same read changed) and committed in one transaction together with the offsets
it consumed, so that a message's effects and its being consumed are one. A read of notices
only writes nothing: its offsets ride the next transaction (at most DEFER_AT_MOST messages
later), so that the waiting call does not wait for a commit of offsets alone; read again after
a restart, a notice settles nothing twice.

    CreditRequested -> TransferCredited on the credited account + a Credited notice,
                       or a CreditRefused (saga.credit says why)
    CreditRefused   -> TransferRefunded on the debited account
    Credited        -> nothing written: the transfer is settled (its money arrived)

Each step is also idempotent by transfer id, for a message met again after a transaction
whose fate was unsettled: a request whose transfer id already has an outcome here (the credit
records the transfer id as its command id) and a refusal or notice for a transfer no longer in
flight append nothing. A read that did not commit is decided again, from the model as the log
then holds it, before anything newer.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from datetime import datetime
from typing import Protocol

from confluent_kafka import TopicPartition

from command_server.saga_messages import (
    Credited,
    CreditRefused,
    SagaMessage,
    UnreadableSagaMessage,
    decode,
    encode,
    message_key,
)
from command_server.shards import Shard
from command_server.transactions import Message_
from command_server.transfers_in_flight import COMPLETED
from command_server.write_model import WriteModel
from command_server.writer.batcher import Batcher, utc_now
from command_server.writer.decisions import WriteFailed
from ledger.domain.account import Account
from ledger.domain.decider import evolve
from ledger.domain.saga import CreditRefusal, CreditRequest, credit, refund
from ledger.events.records import Event

log = logging.getLogger(__name__)

DEFER_AT_MOST = 1_000
"""Messages whose offsets may wait for a later transaction: a restart reads again at most this
many notices (each settles nothing a second time)."""


class Record(Protocol):
    """What the saga needs of a consumed message (confluent_kafka.Message has it)."""

    def value(self) -> bytes | None: ...

    def partition(self) -> int | None: ...

    def offset(self) -> int | None: ...


class SagaSteps:
    def __init__(
        self,
        model: WriteModel,
        batcher: Batcher,
        shard: Shard,
        topic: str,
        group_metadata: object,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._model = model
        self._batcher = batcher
        self._shard = shard
        self._topic = topic
        self._group = group_metadata
        self._clock = clock
        self._undone: list[Record] = []
        """Messages whose transaction did not commit: decided again first."""
        self._deferred: dict[int, int] = {}
        """Offsets processed (notices only) and not committed yet: the next transaction's."""
        self._deferred_messages = 0
        self.appended = 0
        """Events the last step appended."""
        self.failed: str | None = None
        """Why the writer must stop (a message it cannot read), once it must."""

    @property
    def retrying(self) -> bool:
        return bool(self._undone)

    def step(self, read: Sequence[Record]) -> None:
        """Decide and commit `read` (after whatever did not commit before)."""
        messages, self._undone = [*self._undone, *read], []
        self.appended = 0
        if not messages or self.failed is not None:
            return
        why = self._batcher.ready()
        if why is not None:
            self._undone = messages
            return
        try:
            decoded = [decode(m.value() or b"") for m in messages]
        except UnreadableSagaMessage as exc:
            # Skipping it could lose a credit or a refund: stop, as for an undecodable event.
            self.failed = f"a message of topic {self._topic!r} cannot be read: {exc}"
            log.critical("the writer stops: %s", self.failed)
            return
        self._commit(messages, decoded)

    def _commit(self, messages: list[Record], decoded: list[SagaMessage]) -> None:
        now = self._clock()
        model = self._model
        pending: dict[str, Account] = {}
        events: list[tuple[Event, int]] = []
        states: list[Account] = []
        out: list[Message_] = []
        settled: list[str] = []
        seen: set[str] = set()

        def current(account_id: str) -> Account | None:
            return pending.get(account_id) or model.accounts.get(account_id)

        def record(event: Event, account: Account | None) -> None:
            state = pending[event.account_id] = evolve(account, event)
            events.append((event, self._shard.partition_of(event.account_id)))
            states.append(state)

        for message in decoded:
            transfer_id = message.transfer_id
            if transfer_id in seen:
                continue
            if isinstance(message, CreditRequest):
                if self._credited(transfer_id, message.to_account_id):
                    continue
                seen.add(transfer_id)
                account = current(message.to_account_id)
                decided = credit(message, account, now)
                if isinstance(decided, CreditRefusal):
                    reply: SagaMessage = CreditRefused(
                        transfer_id, message.from_account_id, message.to_account_id, decided.reason
                    )
                else:
                    record(decided, account)
                    reply = Credited(transfer_id, message.from_account_id, message.to_account_id)
                out.append(self._message(reply))
            elif (sent := model.transfers.sent.get(transfer_id)) is None:
                continue  # settled already
            elif isinstance(message, CreditRefused):
                seen.add(transfer_id)
                account = current(sent.account_id)
                assert account is not None  # it sent the money
                record(refund(sent, account, message.reason, now), account)
            else:
                seen.add(transfer_id)
                settled.append(transfer_id)
        ends: dict[int, int] = {}
        for m in messages:
            ends[m.partition() or 0] = (m.offset() or 0) + 1
        if not events and not out:
            # Only notices (or what was done already): nothing to write, so their offsets ride
            # the next transaction rather than cost a commit before the waiting call hears.
            for transfer_id in settled:
                model.transfers.settle(transfer_id, COMPLETED)
            self._deferred.update(ends)
            self._deferred_messages += len(messages)
            if self._deferred_messages < DEFER_AT_MOST:
                return
            settled = []
        ends = self._deferred | ends
        consumed = [TopicPartition(self._topic, p, o) for p, o in sorted(ends.items())]
        offsets = self._batcher.write(events, out, (consumed, self._group))
        if isinstance(offsets, WriteFailed):
            log.warning("saga step of %d messages not committed: %s", len(messages), offsets.why)
            self._undone = messages
            return
        for (event, partition), offset, state in zip(events, offsets, states, strict=True):
            model.apply_decided(event, state, partition, offset)
        for transfer_id in settled:
            model.transfers.settle(transfer_id, COMPLETED)
        model.saga_positions.update(ends)
        self._deferred, self._deferred_messages = {}, 0
        self.appended = len(events)

    def _credited(self, transfer_id: str, account_id: str) -> bool:
        """Whether the transfer's credit is in the log already: its command (the transfer id)
        has an event in the credited account's partition (its debit's partition is another:
        partitions never change, decision 2)."""
        outcome = self._model.outcome(transfer_id)
        return outcome is not None and self._shard.partition_of(account_id) in outcome.positions

    def _message(self, message: SagaMessage) -> Message_:
        key = message_key(message)
        return (self._topic, key, encode(message), self._shard.partition_of(key))


def transfer_states(model: WriteModel, transfer_ids: list[str]) -> list[tuple[str, int, str]]:
    """(transfer id, state, reason) of each of `transfer_ids`, as the debiting shard knows it."""
    states = model.transfers
    return [(t, *states.state(t)) for t in transfer_ids]
