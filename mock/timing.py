"""Timing of answers: latency draws from a profile's models, and exact deadline sleeps.

Draws use the provider's seeded RNG, so a run is reproducible. Sleeping is precise: event-loop
timers are only millisecond-accurate (epoll rounds timeouts up to whole milliseconds; libuv
keeps time in milliseconds), which alone would add 0–2 ms to every configured latency. So each
sleeper waits on an ordinary timer until `margin` before its deadline and then hands over to
one shared poller task that releases sleepers as their deadlines pass, yielding to the loop
between checks. Only the final `margin` is polled, and by one task however many requests wait.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time

from .profile import Latency

_monotonic = time.monotonic


def sample(latency: Latency, rng: random.Random) -> float:
    """One latency draw in seconds, never negative. Fixed models do not consume randomness."""
    model = latency.model
    p = latency.params
    if model == "fixed":
        return p[0]
    if model == "uniform":
        return rng.uniform(p[0], p[1])
    if model == "normal":
        return max(0.0, rng.gauss(p[0], p[1]))
    if model == "lognormal":
        if p[0] <= 0:
            return 0.0
        return rng.lognormvariate(math.log(p[0]), p[1])
    raise ValueError(f"unknown latency model {model!r}")


def is_zero(latency: Latency) -> bool:
    """True when the model always draws 0 (lets the hot path skip sleeping entirely)."""
    return latency.model == "fixed" and latency.params[0] == 0.0


class PreciseSleeper:
    """`await sleeper.until(deadline)` returns within microseconds after `deadline`."""

    def __init__(self, margin: float = 0.0015) -> None:
        self.margin = margin
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._poller: asyncio.Task[None] | None = None

    async def until(self, deadline: float) -> None:
        """Sleep until `deadline` on the monotonic clock (returns at once when it has passed)."""
        coarse = deadline - _monotonic() - self.margin
        if coarse > 0:
            await asyncio.sleep(coarse)
        if _monotonic() >= deadline:
            return
        loop = asyncio.get_running_loop()
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._heap, (deadline, next(self._seq), fut))
        if self._poller is None:
            self._poller = loop.create_task(self._poll())
        await fut

    async def _poll(self) -> None:
        heap = self._heap
        try:
            while heap:
                now = _monotonic()
                while heap and heap[0][0] <= now:
                    fut = heapq.heappop(heap)[2]
                    if not fut.done():  # a cancelled sleeper leaves a done future behind
                        fut.set_result(None)
                await asyncio.sleep(0)
        finally:
            self._poller = None
