"""CoalescedReads: calls waiting while a read is in flight go together in the next one."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from query_server.account_reads import MOST_PER_STATEMENT, CoalescedReads
from query_server.errors import Unavailable


class Database:
    """Answers each account id with its upper case; each read waits until it is released (a
    read of an id in `stuck`, until it is unstuck). `failures` are raised by the next reads,
    one each."""

    def __init__(self) -> None:
        self.reads: list[list[str]] = []
        self.release = asyncio.Event()
        self.stuck: set[str] = set()
        self.unstick = asyncio.Event()
        self.failures: list[Exception] = []

    async def read_many(self, account_ids: Sequence[str]) -> list[str]:
        self.reads.append(list(account_ids))
        await (self.unstick if self.stuck.intersection(account_ids) else self.release).wait()
        if self.failures:
            raise self.failures.pop(0)
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
    database.failures.append(ConnectionError("the database went away"))
    first = asyncio.create_task(reads.read("a"))
    await _started()
    second = asyncio.create_task(reads.read("b"))
    await _started()

    database.release.set()
    with pytest.raises(ConnectionError, match="went away"):
        await first
    assert await second == "B"
    assert await reads.read("c") == "C"


async def test_up_to_the_statements_allowed_start_at_once_and_the_rest_wait_together() -> None:
    database = Database()
    reads = CoalescedReads(database.read_many, statements=2)
    calls = []
    for name in ("a", "b", "c", "d"):
        calls.append(asyncio.create_task(reads.read(name)))
        await _started()
    assert database.reads == [["a"], ["b"]]

    database.release.set()

    assert await asyncio.gather(*calls) == ["A", "B", "C", "D"]
    assert sorted(map(len, database.reads)) == [1, 1, 2]


async def test_a_reader_cancelled_in_its_statement_answers_its_calls_unavailable() -> None:
    database = Database()
    reads = CoalescedReads(database.read_many)
    call = asyncio.create_task(reads.read("a"))
    await _started()
    (reader,) = [task for task in asyncio.all_tasks() if task is not call and _reads(task)]
    reader.cancel()

    with pytest.raises(Unavailable, match="stopping"):
        await call
    database.release.set()
    assert await reads.read("b") == "B"


async def test_a_reader_cancelled_before_it_started_leaves_no_call_waiting() -> None:
    database = Database()
    database.release.set()
    reads = CoalescedReads(database.read_many)
    call = asyncio.create_task(reads.read("a"))
    await asyncio.sleep(0)  # the call has queued itself and created its reader, not run it
    (reader,) = [task for task in asyncio.all_tasks() if task is not call and _reads(task)]
    reader.cancel()

    assert await asyncio.wait_for(call, 5) == "A"
    assert await asyncio.wait_for(reads.read("b"), 5) == "B"


def _reads(task: asyncio.Task[object]) -> bool:
    return "_read_waiting" in repr(task.get_coro())


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


async def test_a_stuck_statement_stops_holding_up_the_calls_behind_it() -> None:
    database = Database()
    database.release.set()
    database.stuck.add("stuck")
    reads = CoalescedReads(database.read_many, most_statements=4, overdue_after=0.5)
    stuck = asyncio.create_task(reads.read("stuck"))
    await _started()
    behind = asyncio.create_task(reads.read("b"))
    await _started()
    assert database.reads == [["stuck"]]  # not overdue yet: "b" waits for it
    await asyncio.sleep(0.6)

    # The next call to arrive finds the statement overdue and reads the calls behind it.
    assert await asyncio.wait_for(reads.read("c"), 5) == "C"
    assert await asyncio.wait_for(behind, 5) == "B"
    assert database.reads == [["stuck"], ["b", "c"]]
    assert not stuck.done()

    database.unstick.set()
    assert await stuck == "STUCK"


async def test_overdue_statements_are_never_more_than_the_most_allowed() -> None:
    database = Database()
    database.stuck.update({"a", "b"})
    reads = CoalescedReads(database.read_many, most_statements=2, overdue_after=0.01)
    calls = [asyncio.create_task(reads.read("a"))]
    await asyncio.sleep(0.05)
    calls.append(asyncio.create_task(reads.read("b")))
    await asyncio.sleep(0.05)
    calls.append(asyncio.create_task(reads.read("c")))
    await asyncio.sleep(0.05)
    assert database.reads == [["a"], ["b"]]

    database.release.set()
    database.unstick.set()
    assert await asyncio.gather(*calls) == ["A", "B", "C"]
    assert database.reads == [["a"], ["b"], ["c"]]
