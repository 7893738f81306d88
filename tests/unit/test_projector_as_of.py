"""The read model as of an instant, without I/O: which events a rebuild --until keeps, what it
refuses to start, and how a batch's seconds roll up into currency_totals rows."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from ledger.command_ids import new_command_id
from ledger.domain.commands import Deposit, OpenAccount
from ledger.domain.decider import decide, evolve
from ledger.events.records import Event
from projector.batch_writes import _period_rows
from projector.consumed import DecodedRecord, UndecodableRecord
from projector.projection import PeriodTotals, Projection
from projector.rebuild_until import RebuildUntil, refusal

T = datetime(2026, 11, 30, 23, 59, 59, 999000, tzinfo=UTC)


def _history(times: list[datetime]) -> list[Event]:
    events = decide(OpenAccount(new_command_id(), "a", "USD", "Ada"), {}, times[0])
    account = evolve(None, events[0])
    for at in times[1:]:
        (deposit,) = decide(Deposit(new_command_id(), "a", "1"), {"a": account}, at)
        account = evolve(account, deposit)
        events.append(deposit)
    return events


def test_an_account_is_kept_up_to_its_first_event_after_the_instant() -> None:
    late = T + timedelta(milliseconds=1)
    # The clock went back after `late`: what follows is still after the cut.
    events = _history([T - timedelta(days=1), T, T, late, T])
    records: list[Any] = [DecodedRecord(0, n, e) for n, e in enumerate(events)]
    records.append(UndecodableRecord(0, 9, None, b"x", (), "not avro"))
    job = RebuildUntil("t", "as_of", T, [], reader=None)  # type: ignore[arg-type]
    kept = job._as_of(records[:2]) + job._as_of(records[2:])
    assert [r.offset for r in kept] == [0, 1, 2, 9]


def test_a_rebuild_until_refuses_the_live_schema_a_future_instant_and_a_naive_one() -> None:
    assert refusal("ledger", "ledger_2026_11", T) is None
    assert "live read model" in (refusal("ledger", "ledger", T) or "")
    assert "live read model" in (refusal("ledger", "ledger_rebuild", T) or "")
    assert "lower-case" in (refusal("ledger", "Bad-Name", T) or "")
    assert "future" in (refusal("ledger", "s", datetime.now(UTC) + timedelta(hours=1)) or "")
    assert "time zone" in (refusal("ledger", "s", T.replace(tzinfo=None)) or "")


def test_seconds_roll_up_into_minutes_and_days_in_key_order() -> None:
    second = int((T - datetime(1970, 1, 1, tzinfo=UTC)).total_seconds())
    projection = Projection()
    projection.seconds[(1, "USD", second)] = PeriodTotals(100, 0, 1, 1, 0, 0, 40)
    projection.seconds[(1, "USD", second - 1)] = PeriodTotals(5, 7, 2, 0, 1, 7, 0)
    projection.seconds[(1, "USD", second + 1)] = PeriodTotals(0, 3, 1, 0, 0)  # next day
    rows = _period_rows(projection)
    assert rows == sorted(rows)
    by_key = {(width, start): tuple(rest) for width, start, *rest in rows}
    day, minute = second - second % 86_400, second - second % 60
    # (..., inflow, outflow, exponent, moved, opened, closed, transferred out, transferred in)
    assert by_key[("day", day)] == ("USD", 1, 105, 7, 2, 3, 1, 1, 7, 40)
    assert by_key[("day", day + 86_400)] == ("USD", 1, 0, 3, 2, 1, 0, 0, 0, 0)
    assert by_key[("minute", minute)] == ("USD", 1, 105, 7, 2, 3, 1, 1, 7, 40)
    assert by_key[("second", second)] == ("USD", 1, 100, 0, 2, 1, 1, 0, 0, 40)
    assert len(rows) == 2 + 2 + 3
