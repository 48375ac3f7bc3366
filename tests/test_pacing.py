"""Arrival schedules are pure: due offsets checked exactly, no clock, no sleeping."""

from __future__ import annotations

import itertools
import statistics

import pytest

from soak.pacing import (
    ConstantArrivals,
    PoissonArrivals,
    due_offsets,
    due_schedule,
    expected_count,
    make_arrivals,
)


def test_constant_offsets_are_exact_multiples_of_the_interval() -> None:
    arrivals = ConstantArrivals(100)
    assert arrivals.offset(0) == 0.0
    assert arrivals.offset(1) == pytest.approx(0.01)
    assert arrivals.offset(100) == 1.0
    assert arrivals.offset(200) == 2.0


def test_duration_bound_excludes_the_due_time_at_the_end() -> None:
    offsets = list(due_offsets(ConstantArrivals(100), duration=2.0))
    assert len(offsets) == 200
    assert offsets[-1] == pytest.approx(1.99)
    assert expected_count(ConstantArrivals(100), duration=2.0, count=None) == 200


def test_count_bound_and_both_bounds_take_the_smaller() -> None:
    assert len(list(due_offsets(ConstantArrivals(10), count=7))) == 7
    assert len(list(due_offsets(ConstantArrivals(10), duration=1.0, count=50))) == 10
    assert len(list(due_offsets(ConstantArrivals(10), duration=100.0, count=3))) == 3
    assert list(due_offsets(ConstantArrivals(10), count=0)) == []


def test_fractional_rate_spaces_arrivals_seconds_apart() -> None:
    offsets = list(due_offsets(ConstantArrivals(0.5), duration=10.0))
    assert offsets == [0.0, 2.0, 4.0, 6.0, 8.0]


def test_poisson_is_reproducible_and_has_the_right_mean_gap() -> None:
    a = list(due_offsets(PoissonArrivals(200, seed=7), count=5000))
    b = list(due_offsets(PoissonArrivals(200, seed=7), count=5000))
    c = list(due_offsets(PoissonArrivals(200, seed=8), count=5000))
    assert a == b
    assert a != c
    gaps = [y - x for x, y in itertools.pairwise(a)]
    assert all(g >= 0 for g in gaps)
    assert statistics.fmean(gaps) == pytest.approx(1 / 200, rel=0.05)
    # exponential gaps: standard deviation equals the mean (constant pacing would give 0)
    assert statistics.pstdev(gaps) == pytest.approx(1 / 200, rel=0.1)


def test_poisson_offsets_are_random_access() -> None:
    arrivals = PoissonArrivals(50, seed=3)
    late = arrivals.offset(999)
    early = arrivals.offset(10)
    again = PoissonArrivals(50, seed=3)
    assert [again.offset(i) for i in (10, 999)] == [early, late]
    assert arrivals.offset(0) == 0.0


def test_poisson_duration_bound_gives_about_rate_times_duration() -> None:
    n = len(list(due_offsets(PoissonArrivals(100, seed=1), duration=50.0)))
    assert 4700 < n < 5300


def test_make_arrivals_by_name() -> None:
    assert isinstance(make_arrivals("constant", 5), ConstantArrivals)
    poisson = make_arrivals("poisson", 5, seed=9)
    assert isinstance(poisson, PoissonArrivals)
    assert poisson.seed == 9


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: ConstantArrivals(0), "rate 0 must be > 0"),
        (lambda: ConstantArrivals(-3), "rate -3 must be > 0"),
        (lambda: ConstantArrivals(float("inf")), "rate inf must be a finite number"),
        (lambda: PoissonArrivals("10"), "rate '10' must be a finite number"),  # type: ignore[arg-type]
        (lambda: make_arrivals("burst", 5), "arrival 'burst' must be one of constant, poisson"),
        (lambda: list(due_offsets(ConstantArrivals(1))), "needs a duration or a count"),
        (lambda: list(due_offsets(ConstantArrivals(1), duration=0)), "duration 0 must be > 0"),
        (lambda: list(due_offsets(ConstantArrivals(1), count=-1)), "count -1 must be an integer"),
        (lambda: list(due_offsets(ConstantArrivals(1), count=2.5)), "count 2.5 must be an integer"),
        (lambda: PoissonArrivals(1).offset(-1), "request index -1 must be >= 0"),
    ],
)
def test_bad_input_is_a_one_line_error_naming_the_value(call, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("(", r"\(")) as info:
        call()
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("kind", ["constant", "poisson"])
@pytest.mark.parametrize(
    "bounds", [{"duration": 3.0}, {"count": 301}, {"duration": 2.0, "count": 7}]
)
def test_worker_shares_interleave_to_the_whole_schedule(kind: str, bounds: dict) -> None:
    """Workers 0..2 of 3 take every third request: merged, the very offsets of one engine."""
    whole = list(due_offsets(make_arrivals(kind, 100, seed=5), **bounds))
    shares = [list(due_schedule(make_arrivals(kind, 100, seed=5), first=k, every=3, **bounds))
              for k in range(3)]  # fmt: skip
    assert sorted(i for share in shares for i, _ in share) == list(range(len(whole)))
    for share in shares:
        assert [due for _, due in share] == [whole[i] for i, _ in share]
    with pytest.raises(ValueError, match="share 3 of every 0"):
        list(due_schedule(ConstantArrivals(1), count=1, first=3, every=0))
