"""Timing of answers: latency draws from a profile's models, and exact deadline sleeps.

Draws use the provider's seeded RNG, so a run is reproducible. Sleeping is precise: event-loop
timers are only millisecond-accurate (epoll rounds timeouts up to whole milliseconds; libuv
keeps time in milliseconds), which alone would add 0–2 ms to every configured latency. So all
sleepers share one Linux timerfd armed for the earliest deadline (epoll wakes on it within
microseconds, and the process sleeps in between); elsewhere each sleeper waits on a loop timer
until `margin` before its deadline and one shared task polls the rest.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import math
import random
import time

from .profile import Latency
from .timerfd import TimerFd

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
    """`await sleeper.until(deadline)` returns within microseconds after `deadline`.

    With a timerfd (Linux), all sleepers share one descriptor armed for the earliest deadline:
    the process sleeps until exactly then. Without one, each sleeper waits on a loop timer
    until `margin` before its deadline and a shared task polls the rest.
    """

    def __init__(self, margin: float = 0.0015, use_timerfd: bool = True) -> None:
        self.margin = margin
        self._heap: list[tuple[float, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()
        self._poller: asyncio.Task[None] | None = None
        self._timer = TimerFd.create() if use_timerfd else None
        self._armed = math.inf
        self._loop: asyncio.AbstractEventLoop | None = None
        self.closed = False

    async def until(self, deadline: float) -> None:
        """Sleep until `deadline` on the monotonic clock (returns at once when it has passed)."""
        if self._timer is None:
            await self._until_polled(deadline)
            return
        if _monotonic() >= deadline:
            return
        loop = asyncio.get_running_loop()
        if self._loop is not loop:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._timer.fileno())
            loop.add_reader(self._timer.fileno(), self._fire)
            self._loop = loop
        fut: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._heap, (deadline, next(self._seq), fut))
        if deadline < self._armed:
            self._armed = deadline
            self._timer.arm(deadline)
        await fut

    def _fire(self) -> None:
        """The timerfd is readable: release every due sleeper, arm for the next one."""
        timer = self._timer
        assert timer is not None
        timer.clear()
        heap = self._heap
        now = _monotonic()
        while heap and heap[0][0] <= now:
            fut = heapq.heappop(heap)[2]
            if not fut.done():  # a cancelled sleeper leaves a done future behind
                fut.set_result(None)
        if heap:
            self._armed = heap[0][0]
            timer.arm(self._armed)
        else:
            self._armed = math.inf

    def close(self) -> None:
        """Release the timerfd (sleepers still waiting are cancelled)."""
        for _, _, fut in self._heap:
            fut.cancel()
        self._heap.clear()
        if self._timer is not None:
            if self._loop is not None and not self._loop.is_closed():
                self._loop.remove_reader(self._timer.fileno())
            self._timer.close()
            self._timer = None
        self._loop = None
        self.closed = True

    async def _until_polled(self, deadline: float) -> None:
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
                    if not fut.done():
                        fut.set_result(None)
                await asyncio.sleep(0)
        finally:
            self._poller = None
