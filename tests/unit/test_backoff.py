"""Backoff: a ceiling that doubles from the first wait to the cap, waits drawn below it."""

from __future__ import annotations

import random

import pytest

from ledger.backoff import Backoff


def test_without_jitter_the_waits_double_up_to_the_cap() -> None:
    backoff = Backoff(0.1, 1.0, jitter=False)

    assert [backoff.next() for _ in range(6)] == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.0, 1.0])


def test_with_full_jitter_each_wait_lies_between_zero_and_its_ceiling() -> None:
    backoff = Backoff(0.1, 1.0, rng=random.Random(1))
    ceilings = [0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0]

    for ceiling in ceilings * 20:
        if ceiling == 0.1:
            backoff.reset()
        assert 0.0 <= backoff.next() <= ceiling


def test_jitter_spreads_clients_that_fail_together() -> None:
    clients = [Backoff(1.0, 10.0, rng=random.Random(seed)) for seed in range(20)]

    assert len({client.next() for client in clients}) == 20


def test_a_floor_bounds_every_wait_from_below() -> None:
    backoff = Backoff(0.5, 10.0, floor=0.5, rng=random.Random(2))

    waits = [backoff.next() for _ in range(50)]

    assert waits[0] == 0.5
    assert all(0.5 <= wait <= 10.0 for wait in waits)
    assert max(waits) > 5.0


def test_reset_starts_again_from_the_first_wait() -> None:
    backoff = Backoff(0.1, 5.0, jitter=False)
    for _ in range(5):
        backoff.next()

    backoff.reset()

    assert backoff.next() == 0.1


def test_the_same_seed_gives_the_same_waits() -> None:
    first = Backoff(0.05, 2.0, rng=random.Random(7))
    again = Backoff(0.05, 2.0, rng=random.Random(7))

    assert [first.next() for _ in range(8)] == [again.next() for _ in range(8)]


@pytest.mark.parametrize(
    ("first", "cap", "floor"), [(1.0, 0.5, 0.0), (0.5, 1.0, 0.6), (0.1, 1.0, -1.0)]
)
def test_bounds_out_of_order_are_refused(first: float, cap: float, floor: float) -> None:
    with pytest.raises(ValueError, match="floor <= first <= cap"):
        Backoff(first, cap, floor=floor)
