"""Open-loop arrival schedules: when request i is due, as seconds from the start of a run.

Pure and clock-free (vegeta's Pacer idea): a schedule knows nothing about time passing or how
slow answers are, so the engine can send request i at t0 + offset(i) whatever happens, and the
schedule is tested without sleeping.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Iterator
from typing import Protocol

ARRIVALS = ("constant", "poisson")


class Arrivals(Protocol):
    """A schedule of due times; `offset(i)` is non-decreasing in i and `offset(0) == 0`."""

    rate: float

    def offset(self, i: int) -> float: ...


def _check_rate(rate: float) -> float:
    if not isinstance(rate, int | float) or isinstance(rate, bool) or not math.isfinite(rate):
        raise ValueError(f"rate {rate!r} must be a finite number")
    if rate <= 0:
        raise ValueError(f"rate {rate!r} must be > 0 requests per second")
    return float(rate)


class ConstantArrivals:
    """Evenly spaced arrivals: request i is due at i / rate."""

    __slots__ = ("rate",)

    def __init__(self, rate: float) -> None:
        self.rate = _check_rate(rate)

    def offset(self, i: int) -> float:
        return i / self.rate

    def __repr__(self) -> str:
        return f"ConstantArrivals(rate={self.rate:g})"


class PoissonArrivals:
    """Poisson arrivals: exponential gaps with mean 1 / rate, reproducible from `seed`.

    Offsets are drawn lazily and cached, so `offset(i)` is random-access and the same seed
    always gives the same schedule. Request 0 is due at 0 like every schedule.
    """

    __slots__ = ("_offsets", "_rng", "rate", "seed")

    def __init__(self, rate: float, seed: int = 1) -> None:
        self.rate = _check_rate(rate)
        self.seed = seed
        self._rng = random.Random(seed)
        self._offsets: list[float] = [0.0]

    def offset(self, i: int) -> float:
        if i < 0:
            raise ValueError(f"request index {i} must be >= 0")
        offsets = self._offsets
        if i >= len(offsets):
            draw = self._rng.expovariate
            rate = self.rate
            last = offsets[-1]
            for _ in range(i + 1 - len(offsets)):
                last += draw(rate)
                offsets.append(last)
        return offsets[i]

    def __repr__(self) -> str:
        return f"PoissonArrivals(rate={self.rate:g}, seed={self.seed})"


def make_arrivals(kind: str, rate: float, seed: int = 1) -> Arrivals:
    """The schedule named by the config's `engine.arrival` (constant | poisson)."""
    if kind == "constant":
        return ConstantArrivals(rate)
    if kind == "poisson":
        return PoissonArrivals(rate, seed)
    raise ValueError(f"arrival {kind!r} must be one of {', '.join(ARRIVALS)}")


def check_bounds(duration: float | None, count: int | None) -> None:
    """A run needs a positive duration or a count (or both), so it always stops by itself."""
    if duration is None and count is None:
        raise ValueError("a run needs a duration or a count (or both)")
    if duration is not None and not (
        isinstance(duration, int | float) and math.isfinite(duration) and duration > 0
    ):
        raise ValueError(f"duration {duration!r} must be > 0 seconds")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise ValueError(f"count {count!r} must be an integer >= 0")


def due_offsets(
    arrivals: Arrivals, *, duration: float | None = None, count: int | None = None
) -> Iterator[float]:
    """Due offsets of a bounded run: those before `duration` seconds, at most `count` of them.

    At least one bound is required, so every run stops by itself.
    """
    check_bounds(duration, count)
    indices = range(count) if count is not None else itertools.count()
    offset = arrivals.offset
    for i in indices:
        due = offset(i)
        if duration is not None and due >= duration:
            return
        yield due


def due_schedule(
    arrivals: Arrivals,
    *,
    duration: float | None = None,
    count: int | None = None,
    first: int = 0,
    every: int = 1,
) -> Iterator[tuple[int, float]]:
    """(index, due offset) of every `every`-th request of a bounded run from index `first`:
    one worker's share of the schedule. The shares of workers 0..N-1 interleave to exactly the
    requests `due_offsets` gives, at the same times, so N workers together send the configured
    arrival process (a Poisson schedule is drawn whole in each, from the same seed)."""
    check_bounds(duration, count)
    if not (isinstance(every, int) and every >= 1 and isinstance(first, int) and first >= 0):
        raise ValueError(f"share {first} of every {every} must be 0 <= first, every >= 1")
    indices = range(first, count, every) if count is not None else itertools.count(first, every)
    offset = arrivals.offset
    for i in indices:
        due = offset(i)
        if duration is not None and due >= duration:
            return
        yield i, due


def expected_count(arrivals: Arrivals, *, duration: float | None, count: int | None) -> int:
    """How many requests a bounded constant-rate run schedules (an estimate for Poisson)."""
    if duration is None:
        return int(count or 0)
    n = math.ceil(duration * arrivals.rate - 1e-9)
    return n if count is None else min(n, count)
