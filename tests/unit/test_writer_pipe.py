"""The writer's handle with two messages in the pipe: a second message larger than the pipe's
buffer, sent while the writer is busy with the first and then answers it at length, must not
block the event loop (which reads the answers) - the two processes would wait for each other."""

from __future__ import annotations

import asyncio
import faulthandler
import time
from multiprocessing.connection import Connection
from typing import cast

import pytest

from command_server.settings import Settings
from command_server.writer import handle
from command_server.writer.handle import WriterProcess
from command_server.writer.protocol import Batch

LARGE = 2_000_000
"""Bytes: well past a socketpair's buffer (a few hundred kilobytes)."""


def slow_writer(conn: Connection, settings: object) -> None:
    """Answers each message after a pause, with as many bytes as the message held."""
    while True:
        message = conn.recv()
        if message is None:
            return
        time.sleep(0.3)
        ((_, (text,)),) = message[0]
        conn.send((0, "", [b"x" * len(text)]))


def _batch(size: int) -> Batch:
    return ([(0, ("x" * size,))], [])


async def test_a_large_second_batch_neither_blocks_the_loop_nor_the_writer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(handle, "writer_main", slow_writer)
    writer = WriterProcess(cast(Settings, None))
    writer.start()
    ticks = 0

    async def tick() -> None:
        nonlocal ticks
        while True:
            ticks += 1
            await asyncio.sleep(0.01)

    ticker = asyncio.create_task(tick())
    # A deadlock blocks the event loop itself, so that no asyncio timeout fires: end the run
    # loudly instead of hanging it.
    faulthandler.dump_traceback_later(60, exit=True)
    try:
        first = asyncio.create_task(writer.commit(_batch(LARGE)))
        await asyncio.sleep(0)
        second = asyncio.create_task(writer.commit(_batch(LARGE)))
        replies = await asyncio.wait_for(asyncio.gather(first, second), 20)
    finally:
        faulthandler.cancel_dump_traceback_later()
        ticker.cancel()
        await writer.stop(grace_seconds=5)

    assert [len(r[2][0]) for r in replies] == [LARGE, LARGE]
    assert ticks > 20  # the loop went on while the writer worked on both
