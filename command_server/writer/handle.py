"""The gRPC process's handle on the writer process: spawn it, wait until it has rebuilt the
state, exchange batches with it over a pipe without blocking the event loop, stop it."""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Protocol

from command_server.settings import Settings
from command_server.writer.process import writer_main
from command_server.writer.protocol import PROBE, TRANSFERS, Batch, BatchReply, unpack_start


class WriterLost(RuntimeError):
    """The writer process exited or closed its end of the pipe."""


class Writer(Protocol):
    """What the committer needs of the writer (`WriterProcess`): one batch's round trip."""

    async def commit(self, batch: Batch) -> BatchReply:
        """The batch's reply; raises WriterLost if the writer is gone."""
        ...

    async def probe(self) -> BatchReply:
        """What the writer knows of Kafka now (no verdicts); raises WriterLost likewise."""
        ...

    async def transfers(self, transfer_ids: list[str]) -> BatchReply:
        """A probe whose verdicts are how the cross-shard transfers stand (transfer id, state,
        reason); raises WriterLost likewise."""
        ...


@dataclass(frozen=True, slots=True)
class Rebuilt:
    """What the writer reports once it has rebuilt its state from the event store."""

    partitions: int
    accounts: int
    events: int


class WriterProcess:
    """The writer process as the gRPC process sees it; callers keep one batch in flight."""

    def __init__(self, settings: Settings) -> None:
        # spawn, not fork: this process already runs gRPC's and asyncio's threads.
        context = multiprocessing.get_context("spawn")
        self._conn, child_conn = context.Pipe(duplex=True)
        self._process = context.Process(
            target=writer_main,
            args=(child_conn, settings),
            name="command-server-writer",
            # Should this process die without stopping it, multiprocessing still terminates it.
            daemon=True,
        )
        self._child_conn = child_conn
        self._waiting: deque[asyncio.Future[Any]] = deque()
        """Callers waiting for the writer's messages, oldest first."""
        self._sender = ThreadPoolExecutor(max_workers=1, thread_name_prefix="writer-pipe")
        """Sends a message while an earlier one is unanswered (`_exchange`); one thread, so
        messages leave in the order they were handed to it."""

    def start(self) -> None:
        self._process.start()
        # Only the child keeps its end open, so its exit shows here as end-of-file.
        self._child_conn.close()

    async def rebuilt(self) -> Rebuilt:
        """Wait until the writer is ready to take batches; raise what made it fail otherwise."""
        partitions, accounts, events = unpack_start(await self._receive())
        return Rebuilt(partitions, accounts, events)

    async def commit(self, batch: Batch) -> BatchReply:
        """Hand one batch to the writer and wait for its verdicts."""
        return await self._exchange(batch)

    async def probe(self) -> BatchReply:
        """Ask the writer whether Kafka takes commits now (a reply without verdicts)."""
        return await self._exchange(PROBE)

    async def transfers(self, transfer_ids: list[str]) -> BatchReply:
        """How the cross-shard transfers stand, as the writer knows them (protocol.TRANSFERS)."""
        return await self._exchange((TRANSFERS, transfer_ids))

    async def _exchange(self, message: Batch | str | tuple[str, list[str]]) -> BatchReply:
        """Send `message` and wait for its answer. Sent from the event loop only while no
        earlier message waits for its answer: the writer is then reading the pipe. Otherwise
        the writer may be busy with the previous batch, and a message larger than the pipe's
        buffer would block until it reads, so it is sent from the sender thread, in order: a
        blocked event loop would not read the writer's answer either, and both would wait for
        ever."""
        direct = not self._waiting
        reply = self._receive()
        try:
            if direct:
                self._conn.send(message)
            else:
                loop = asyncio.get_running_loop()
                await loop.run_in_executor(self._sender, self._conn.send, message)
        except (BrokenPipeError, ConnectionResetError, OSError) as exc:
            reply.cancel()
            raise WriterLost(f"the writer process is gone: {exc!r}") from exc
        answer: BatchReply = await reply
        return answer

    def _receive(self) -> asyncio.Future[Any]:
        """The writer's next message not yet claimed: the writer answers in the order it was
        asked, so the oldest waiting future gets the next message (three batches may be in the
        pipe; an answer whose caller gave up is read and dropped)."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Any] = loop.create_future()
        if not self._waiting:
            loop.add_reader(self._conn.fileno(), self._readable, loop)
        self._waiting.append(future)
        return future

    def _readable(self, loop: asyncio.AbstractEventLoop) -> None:
        future = self._waiting.popleft()
        try:
            # The writer sends each message whole, so this does not wait for long.
            message = self._conn.recv()
        except (EOFError, OSError) as exc:
            lost = WriterLost(f"the writer process is gone: {exc!r}")
            for waiting in (future, *self._waiting):
                if not waiting.done():
                    waiting.set_exception(lost)
            self._waiting.clear()
        else:
            if not future.done():
                future.set_result(message)
        if not self._waiting:
            loop.remove_reader(self._conn.fileno())

    async def stop(self, grace_seconds: float = 30) -> int | None:
        """Ask the writer to close its producer and exit; returns its exit code."""
        with contextlib.suppress(OSError):  # it may be gone already
            self._conn.send(None)
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, self._process.join, grace_seconds)
        if self._process.is_alive():
            self._process.kill()
            await loop.run_in_executor(None, self._process.join, 5)
        if self._waiting:
            loop.remove_reader(self._conn.fileno())
            lost = WriterLost("the writer process was stopped")
            for waiting in self._waiting:
                if not waiting.done():
                    waiting.set_exception(lost)
            self._waiting.clear()
        self._sender.shutdown(wait=False)
        self._conn.close()
        return self._process.exitcode
