"""Transfer calls waiting for the end of their cross-shard transfer (docs/design.md, 13).

The debit is committed before the call waits: waiting is only about what to answer, so it is
bounded (`most` calls at once; each by its deadline and LEDGER_TRANSFER_WAIT_SECONDS) and a
call that cannot wait, or waits in vain, answers PENDING rather than fail. The committer asks
the writer how the waited-for transfers stand while any call waits (`ASK_EVERY`), and settles
each wait whose transfer ended.
"""

from __future__ import annotations

import asyncio

from command_server.transfers_in_flight import PENDING

ASK_EVERY = 0.02
"""Seconds between two questions to the writer while calls wait: at most this much is added
to the answer of a transfer credited in time."""

TransferState = tuple[int, str]
"""(state, reason): transfers_in_flight's PENDING, COMPLETED or REFUNDED, and why refunded."""


class TransferWaits:
    def __init__(self, most: int) -> None:
        self._most = most
        self._waiting: dict[str, list[asyncio.Future[TransferState]]] = {}
        self._count = 0

    def __bool__(self) -> bool:
        return bool(self._waiting)

    def ids(self) -> list[str]:
        return list(self._waiting)

    async def wait(self, transfer_id: str, seconds: float) -> TransferState:
        """The transfer's end, or (PENDING, "") if not known within `seconds` or if `most` calls
        wait already."""
        if self._count >= self._most or seconds <= 0:
            return PENDING, ""
        future: asyncio.Future[TransferState] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(transfer_id, []).append(future)
        self._count += 1
        try:
            return await asyncio.wait_for(asyncio.shield(future), seconds)
        except TimeoutError:
            return PENDING, ""
        finally:
            self._count -= 1
            futures = self._waiting.get(transfer_id)
            if futures is not None and future in futures:
                futures.remove(future)
                if not futures:
                    del self._waiting[transfer_id]

    def settle(self, states: list[tuple[str, int, str]]) -> None:
        """Answer the waits of every transfer among `states` that ended."""
        for transfer_id, state, reason in states:
            if state == PENDING:
                continue
            for future in self._waiting.pop(transfer_id, []):
                if not future.done():
                    future.set_result((state, reason))
