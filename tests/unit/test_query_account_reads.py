"""CoalescedReads: calls waiting while a read is in flight go together in the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from query_server.account_reads import MOST_PER_STATEMENT, CoalescedReads


class Database:
    """Answers each account id with its upper case; each read waits until it is released."""

    def __init__(self) -> None:
        self.reads: list[list[str]] = []
        self.release = asyncio.Event()
        self.failure: Exception | None = None

    async def read_many(self, account_ids: Sequence[str]) -> list[str]:
        self.reads.append(list(account_ids))
        await self.release.wait()
        if self.failure is not None:
            raise self.failure
        return [account_id.upper() for account_id in account_ids]


async def _started() -> None:
    """Let every call created so far run up to its first wait."""
    for _ in range(3):
        await asyncio.sleep(0)


async def test_a_lone_read_starts_at_once() -> None:
    database = Database()
    database.release.set()
    reads = CoalescedReads(database.read_many)

    assert await reads.read("a") == "A"
    assert database.reads == [["a"]]


async def test_reads_arriving_meanwhile_go_together_in_the_next_statement() -> None:
    database = Database()
    reads = CoalescedReads(database.read_many)
    first = asyncio.create_task(reads.read("a"))
    await _started()
    later = [asyncio.create_task(reads.read(name)) for name in ("b", "c", "d")]
    await _started()
    assert database.reads == [["a"]]

    database.release.set()

    assert await first == "A"
    assert await asyncio.gather(*later) == ["B", "C", "D"]
    assert database.reads == [["a"], ["b", "c", "d"]]


async def test_a_statement_reads_at_most_its_bound() -> None:
    database = Database()
    reads = CoalescedReads(database.read_many)
    first = asyncio.create_task(reads.read("first"))
    await _started()
    names = [f"a{n}" for n in range(MOST_PER_STATEMENT + 1)]
    later = [asyncio.create_task(reads.read(name)) for name in names]
    await _started()

    database.release.set()

    assert await asyncio.gather(first, *later) == [name.upper() for name in ["first", *names]]
    assert [len(read) for read in database.reads] == [1, MOST_PER_STATEMENT, 1]


async def test_a_failed_statement_fails_its_calls_only() -> None:
    database = Database()
    reads = CoalescedReads(database.read_many)
    database.failure = ConnectionError("the database went away")
    first = asyncio.create_task(reads.read("a"))
    await _started()
    second = asyncio.create_task(reads.read("b"))
    await _started()

    database.release.set()
    with pytest.raises(ConnectionError, match="went away"):
        await first
    with pytest.raises(ConnectionError):
        await second
    database.failure = None

    assert await reads.read("c") == "C"


async def test_a_caller_that_gave_up_is_not_read_for_and_the_others_are_answered() -> None:
    database = Database()
    reads = CoalescedReads(database.read_many)
    first = asyncio.create_task(reads.read("a"))
    await _started()
    gone = asyncio.create_task(reads.read("gone"))
    kept = asyncio.create_task(reads.read("kept"))
    await _started()
    gone.cancel()
    await _started()

    database.release.set()

    assert await first == "A"
    assert await kept == "KEPT"
    assert gone.cancelled()
    assert database.reads == [["a"], ["kept"]]


async def test_a_statement_with_the_wrong_number_of_results_fails_its_calls() -> None:
    async def short(account_ids: Sequence[str]) -> list[str]:
        return []

    reads = CoalescedReads(short)

    with pytest.raises(RuntimeError, match="0 results for 1 account ids"):
        await reads.read("a")
