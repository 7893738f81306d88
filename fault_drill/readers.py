"""The readers: they read accounts back with the consistency tokens of acknowledged commands,
and count every read that did not show the command (read-your-writes, docs/design.md,
decision 9)."""

from __future__ import annotations

import asyncio
import random
from collections import Counter
from dataclasses import dataclass, field

import grpc

from fault_drill.book import Acked, Book
from fault_drill.calls import EXPECTED_TRANSIENT, RETRYABLE
from fault_drill.config import DrillConfig
from ledger.v1 import queries_pb2 as qry
from ledger.v1 import queries_pb2_grpc as qry_grpc


@dataclass(slots=True)
class ReadStats:
    reads: int = 0
    transient: Counter[str] = field(default_factory=Counter)
    """Failed attempts that were retried, by status code."""
    gave_up: int = 0
    violations: list[str] = field(default_factory=list)
    """Read-your-writes violations: a read with a command's token that did not show it."""
    unexpected: list[str] = field(default_factory=list)
    """Answers with a status a query server should not give (INTERNAL, UNKNOWN...)."""


class Reader:
    """Reads accounts back from the query server with the tokens of acknowledged commands."""

    def __init__(
        self,
        index: int,
        stub: qry_grpc.QueryServiceAsyncStub,
        *,
        book: Book,
        config: DrillConfig,
        stop: asyncio.Event,
        stats: ReadStats,
    ) -> None:
        self._stub = stub
        self._book = book
        self._stop = stop
        self._stats = stats
        self._rng = random.Random(f"{config.seed}/reader/{index}")
        self._deadline = max(5.0, config.call_deadline_s)

    async def run(self) -> None:
        while not self._stop.is_set():
            if not self._book.recent:
                await asyncio.sleep(0.05)
                continue
            await self._read(self._rng.choice(self._book.recent))
            await asyncio.sleep(self._rng.uniform(0, 0.05))

    async def _read(self, acked: Acked) -> None:
        request = qry.GetAccountRequest(account_id=acked.account_id, consistency_token=acked.token)
        ceiling = 0.05
        what = f"GetAccount({acked.account_id}) with the token of version {acked.version}"
        for _ in range(20):
            if self._stop.is_set():
                return
            try:
                reply = await self._stub.GetAccount(request, timeout=self._deadline)
            except grpc.aio.AioRpcError as error:
                code = error.code()
                if code not in RETRYABLE:
                    # NOT_FOUND with the token of the account's own command: not read back.
                    self._stats.violations.append(f"{what}: {code.name} {error.details()}")
                    return
                self._stats.transient[code.name] += 1
                if code.name not in EXPECTED_TRANSIENT:
                    self._stats.unexpected.append(f"{what}: {code.name} {error.details()}")
                await asyncio.sleep(self._rng.uniform(0, ceiling))
                ceiling = min(ceiling * 2, 2.0)
                continue
            self._stats.reads += 1
            if reply.account.version < acked.version:
                self._stats.violations.append(f"{what} answered version {reply.account.version}")
            return
        self._stats.gave_up += 1
