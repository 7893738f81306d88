"""Cross-shard transfers (the saga of decision 13) as the drill sees them.

A cross-shard Transfer may be answered OK with status PENDING: the debit is written, the credit
(or a refund) follows on its own. A careful client then treats the money as in flight: it
follows the transfer with the query server's GetTransfer (`TransferWatch`, bounded) and only
then credits the destination or gives the source its money back in what it knows. Before the log
is folded, the drill waits (bounded) until every saga in the log has ended (`wait_sagas_ended`).
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import grpc

from fault_drill.book import COMPLETED, REFUNDED, UNKNOWN, Book
from fault_drill.config import DrillConfig
from fault_drill.event_log import LogRecord
from fault_drill.journal import CommandRecord
from ledger.events.records import TransferCredited, TransferRefunded, TransferSent
from ledger.v1 import queries_pb2 as qry
from ledger.v1 import queries_pb2_grpc as qry_grpc

_END_OF = {qry.TRANSFER_STATE_COMPLETED: COMPLETED, qry.TRANSFER_STATE_REFUNDED: REFUNDED}
POLL_S = (0.1, 1.0)
"""First and longest pause between two GetTransfer calls (doubling)."""


@dataclass(slots=True)
class SagaLog:
    """The cross-shard transfers in the log, by how they ended."""

    sent: set[str] = field(default_factory=set)
    credited: set[str] = field(default_factory=set)
    refunded: set[str] = field(default_factory=set)

    @property
    def in_flight(self) -> set[str]:
        """Sent, and neither credited nor refunded (yet)."""
        return self.sent - self.credited - self.refunded

    def end_of(self, transfer_id: str) -> str:
        if transfer_id in self.credited:
            return COMPLETED
        return REFUNDED if transfer_id in self.refunded else UNKNOWN


def sagas_of(records: Iterable[LogRecord]) -> SagaLog:
    found = SagaLog()
    for record in records:
        match record.event:
            case TransferSent(transfer_id=transfer_id):
                found.sent.add(transfer_id)
            case TransferCredited(transfer_id=transfer_id):
                # Same-shard transfers are credited too; only sent ones count as sagas.
                found.credited.add(transfer_id)
            case TransferRefunded(transfer_id=transfer_id):
                found.refunded.add(transfer_id)
    return found


@dataclass(frozen=True, slots=True)
class SagasEnded:
    records: list[LogRecord]
    sagas: SagaLog
    waited_s: float
    """From the first read of the log to the read that found no saga in flight (or the bound)."""


async def wait_sagas_ended(
    read: Callable[[], list[LogRecord]], *, deadline_s: float, poll_s: float = 1.0
) -> SagasEnded:
    """Read the log until no saga is in flight in it, or `deadline_s` has passed: the last read."""
    started = time.monotonic()
    while True:
        records = await asyncio.to_thread(read)
        sagas = sagas_of(records)
        waited = time.monotonic() - started
        if not sagas.in_flight or waited >= deadline_s:
            return SagasEnded(records, sagas, waited)
        await asyncio.sleep(min(poll_s, max(0.0, deadline_s - waited)))


@dataclass(slots=True)
class Followed:
    """What the clients learned of the transfers answered PENDING."""

    ends: dict[str, str] = field(default_factory=dict)
    """Per transfer: the end GetTransfer showed, or UNKNOWN at the bound."""
    waits: list[float] = field(default_factory=list)
    """Seconds from the PENDING answer to the end GetTransfer showed."""


class TransferWatch:
    """Follows the transfers answered PENDING until their end is known, and tells the book."""

    def __init__(
        self,
        query: qry_grpc.QueryServiceAsyncStub,
        book: Book,
        config: DrillConfig,
    ) -> None:
        self._query = query
        self._book = book
        self._deadline_s = config.saga_end_deadline_s
        self._call_deadline_s = config.call_deadline_s
        self._following: set[asyncio.Task[None]] = set()
        self.followed = Followed()

    def follow(self, record: CommandRecord) -> None:
        """Learn the end of `record`, an acknowledged transfer answered PENDING, in the
        background; its accounts stay in flight in the book until then."""
        task = asyncio.create_task(self._follow(record), name=f"saga-{record.command_id}")
        self._following.add(task)
        task.add_done_callback(self._following.discard)

    async def drain(self) -> None:
        """Wait for every transfer being followed (each is bounded by `deadline_s`)."""
        while self._following:
            await asyncio.gather(*self._following, return_exceptions=True)

    def cancel(self) -> None:
        for task in self._following:
            task.cancel()

    async def _follow(self, record: CommandRecord) -> None:
        started = time.monotonic()
        end = await self._end_of(record.command_id, started + self._deadline_s)
        if end != UNKNOWN:
            self.followed.waits.append(time.monotonic() - started)
        self.followed.ends[record.command_id] = end
        self._book.saga_ended(record, end)

    async def _end_of(self, transfer_id: str, until: float) -> str:
        request = qry.GetTransferRequest(transfer_id=transfer_id)
        pause = POLL_S[0]
        while True:
            left = until - time.monotonic()
            if left <= 0:
                return UNKNOWN
            try:
                reply = await self._query.GetTransfer(
                    request, timeout=min(self._call_deadline_s, left)
                )
            except grpc.aio.AioRpcError:
                pass  # not projected yet (NOT_FOUND), or the query server is away: ask again
            else:
                end = _END_OF.get(reply.transfer.state)
                if end is not None:
                    return end
            await asyncio.sleep(min(pause, max(0.0, until - time.monotonic())))
            pause = min(pause * 2, POLL_S[1])


def saga_report(
    journal: Iterable[CommandRecord],
    sagas: SagaLog | None,
    followed: Followed | None,
    waited_s: float | None,
) -> dict[str, Any]:
    """The cross-shard transfers: how many, how each ended, and what the clients learned."""
    followed = followed or Followed()
    disagreements = []
    if sagas is not None:
        disagreements = [
            f"{transfer_id}: GetTransfer said {end}, the log says {sagas.end_of(transfer_id)}"
            for transfer_id, end in followed.ends.items()
            if end != UNKNOWN and end != sagas.end_of(transfer_id)
        ]
    waits = sorted(followed.waits)
    return {
        "sent": None if sagas is None else len(sagas.sent),
        "completed": None if sagas is None else len(sagas.sent & sagas.credited),
        "refunded": None if sagas is None else len(sagas.sent & sagas.refunded),
        "in_flight": None if sagas is None else sorted(sagas.in_flight),
        "in_flight_wait_s": None if waited_s is None else round(waited_s, 2),
        "answered_pending": sum(1 for r in journal if r.answered_pending),
        "pending_ends_learned": dict(Counter(followed.ends.values())),
        "pending_end_median_s": round(waits[len(waits) // 2], 2) if waits else None,
        "pending_end_max_s": round(waits[-1], 2) if waits else None,
        "end_disagreements": disagreements,
    }
