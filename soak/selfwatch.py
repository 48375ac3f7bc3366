"""The generator watches itself: event-loop lag, its own CPU, send lag, drops → a trust flag.

A Python load generator measures sub-millisecond overhead honestly only well below its own
saturation point. When it is the bottleneck (a busy CPU, a late event loop, sends running
behind schedule, or drops at the in-flight cap), the numbers describe the tester, not the
gateway, and the report must say so. A generator can also be starved: other processes on its
core keep it waiting for a CPU (Linux schedstat run-queue wait), and its sends go out late
whatever its own load. No psutil here: `time.process_time()` and `/proc/thread-self/schedstat`
are enough, and keep that dependency with the gateway observer.

The watch also reads the machine's *steal* time (/proc/stat): CPU time the hypervisor gave this
virtual machine's CPUs to other guests. No process here can see it as load, yet it slowed whole
runs by milliseconds on a shared VM (docs/BENCHMARKS.md); it is reported, and a comparison with
a baseline leaves such runs out (soak.baseline), but it does not make the generator untrusted.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from soak.results import Result
from soak.summary import GeneratorHealth


@dataclass(frozen=True, slots=True)
class HealthBounds:
    """Limits beyond which the generator's own numbers are not trusted (seconds, ratio)."""

    max_cpu_ratio: float = 0.9
    """Own CPU time / wall time; above it the process was CPU-bound."""
    max_loop_lag: float = 0.05
    """Worst lateness of the event loop waking from a short sleep."""
    max_send_lag_p99: float = 0.01
    """99th percentile of (actual send − intended send)."""
    max_cpu_wait_ratio: float = 0.2
    """Time the loop's thread was runnable but waiting for a CPU / wall time (Linux): a
    generator starved by other processes sends late whatever its own load."""
    min_wall_for_cpu: float = 1.0
    """Runs shorter than this are too short for a meaningful CPU ratio; it is not judged."""


@dataclass(frozen=True, slots=True)
class WatchReading:
    """What the watch saw between start and stop."""

    wall: float
    cpu: float
    loop_lag_max: float
    loop_lag_mean: float
    samples: int
    cpu_wait: float | None = None
    """Seconds runnable but not running (None where the OS does not tell)."""
    host_steal: float | None = None
    """Share of the machine's CPU ticks stolen by the hypervisor (None where not told)."""

    @property
    def cpu_ratio(self) -> float:
        return self.cpu / self.wall if self.wall > 0 else 0.0

    @property
    def cpu_wait_ratio(self) -> float | None:
        if self.cpu_wait is None:
            return None
        return self.cpu_wait / self.wall if self.wall > 0 else 0.0


def thread_cpu_wait() -> float | None:
    """Seconds the calling thread has waited on a run queue (Linux schedstat), else None."""
    try:
        with open("/proc/thread-self/schedstat", "rb") as f:
            return int(f.read().split()[1]) / 1e9
    except (OSError, ValueError, IndexError):
        return None


def host_cpu_ticks() -> tuple[int, int] | None:
    """(steal, total) CPU ticks of the whole machine so far (Linux /proc/stat), else None."""
    try:
        with open("/proc/stat", "rb") as f:
            ticks = [int(v) for v in f.readline().split()[1:9]]
    except (OSError, ValueError):
        return None
    if len(ticks) < 8:
        return None
    return ticks[7], sum(ticks)


def steal_share(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    """Stolen share of the ticks between two `host_cpu_ticks` readings (None: unknown)."""
    if start is None or end is None or end[1] <= start[1]:
        return None
    return min(1.0, max(0.0, (end[0] - start[0]) / (end[1] - start[1])))


class SelfWatch:
    """Probe the running event loop's lag and the process's CPU share while a load runs.

    The probe task sleeps `interval` seconds in a loop and records how late each wake-up is: a
    loop busy with callbacks wakes late. Clocks are arguments so tests can drive them.
    """

    def __init__(
        self,
        interval: float = 0.02,
        *,
        clock: Callable[[], float] = time.perf_counter,
        cpu_clock: Callable[[], float] = time.process_time,
        sleep: Callable[[float], object] = asyncio.sleep,
        wait_clock: Callable[[], float | None] = thread_cpu_wait,
        steal_clock: Callable[[], tuple[int, int] | None] = host_cpu_ticks,
    ) -> None:
        if not interval > 0:
            raise ValueError(f"self-watch interval {interval!r} must be > 0 seconds")
        self.interval = interval
        self._clock = clock
        self._cpu_clock = cpu_clock
        self._sleep = sleep
        self._wait_clock = wait_clock
        self._steal_clock = steal_clock
        self._steal0: tuple[int, int] | None = None
        self._wait0: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._wall0 = 0.0
        self._cpu0 = 0.0
        self._lag_max = 0.0
        self._lag_sum = 0.0
        self._samples = 0

    def start(self) -> None:
        """Begin watching (idempotent); call from inside the running loop."""
        if self._task is not None:
            return
        self._wall0 = self._clock()
        self._cpu0 = self._cpu_clock()
        self._wait0 = self._wait_clock()
        self._steal0 = self._steal_clock()
        self._task = asyncio.get_running_loop().create_task(self._probe())

    async def _probe(self) -> None:
        clock, sleep, interval = self._clock, self._sleep, self.interval
        while True:
            before = clock()
            await sleep(interval)  # type: ignore[misc]
            lag = max(0.0, clock() - before - interval)
            self._samples += 1
            self._lag_sum += lag
            if lag > self._lag_max:
                self._lag_max = lag

    def reading(self) -> WatchReading:
        """The figures so far (the watch keeps running); call from the loop's thread."""
        wait = self._wait_clock() if self._wait0 is not None else None
        return WatchReading(
            wall=max(0.0, self._clock() - self._wall0),
            cpu=max(0.0, self._cpu_clock() - self._cpu0),
            loop_lag_max=self._lag_max,
            loop_lag_mean=self._lag_sum / self._samples if self._samples else 0.0,
            samples=self._samples,
            cpu_wait=None if wait is None or self._wait0 is None else max(0.0, wait - self._wait0),
            host_steal=steal_share(self._steal0, self._steal_clock()),
        )

    async def stop(self) -> WatchReading:
        """Stop the probe and return what it saw."""
        reading = self.reading()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        return reading

    async def __aenter__(self) -> SelfWatch:
        self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()


def send_lag_p99(results: Iterable[Result]) -> float:
    """Nearest-rank 99th percentile of send lag (0 for no results; negative lags count as 0)."""
    lags = sorted(r.sent - r.intended for r in results)
    if not lags:
        return 0.0
    rank = max(1, math.ceil(0.99 * len(lags)))
    return max(0.0, lags[rank - 1])


def assess(
    reading: WatchReading,
    *,
    send_lag_p99: float,
    drops: int,
    bounds: HealthBounds | None = None,
    loop: str | None = None,
) -> GeneratorHealth:
    """Judge whether the generator kept up; every failed bound becomes a one-line reason."""
    b = bounds or HealthBounds()
    reasons: list[str] = []
    cpu_ratio = reading.cpu_ratio
    if reading.wall >= b.min_wall_for_cpu and cpu_ratio > b.max_cpu_ratio:
        reasons.append(f"generator CPU {cpu_ratio:.0%} of one core > {b.max_cpu_ratio:.0%}")
    wait_ratio = reading.cpu_wait_ratio
    if reading.wall >= b.min_wall_for_cpu and wait_ratio and wait_ratio > b.max_cpu_wait_ratio:
        reasons.append(
            f"generator waited for a CPU {wait_ratio:.0%} of the time > {b.max_cpu_wait_ratio:.0%}"
            " (other processes on its core)"
        )
    if reading.loop_lag_max > b.max_loop_lag:
        reasons.append(
            f"event-loop lag max {reading.loop_lag_max * 1e3:.1f} ms > {b.max_loop_lag * 1e3:g} ms"
        )
    if send_lag_p99 > b.max_send_lag_p99:
        reasons.append(
            f"send lag p99 {send_lag_p99 * 1e3:.1f} ms > {b.max_send_lag_p99 * 1e3:g} ms"
        )
    if drops > 0:
        reasons.append(f"{drops} requests dropped at the in-flight cap")
    return GeneratorHealth(
        send_lag_p99=send_lag_p99,
        loop_lag_max=reading.loop_lag_max,
        cpu_ratio=cpu_ratio,
        drops=drops,
        trusted=not reasons,
        reasons=tuple(reasons),
        host_steal=reading.host_steal,
        loop=loop,
    )


def merge_health(healths: Sequence[GeneratorHealth], *, send_lag_p99: float) -> GeneratorHealth:
    """One verdict for a load shared by worker processes (`soak.workers`): trusted only when
    every worker was, each reason named with its worker; the worst loop lag and CPU share of
    one worker (each had its own loop and core), drops summed, send lag over every request."""
    return GeneratorHealth(
        send_lag_p99=send_lag_p99,
        loop_lag_max=max((h.loop_lag_max for h in healths), default=0.0),
        cpu_ratio=max((h.cpu_ratio for h in healths), default=0.0),
        drops=sum(h.drops for h in healths),
        trusted=all(h.trusted for h in healths),
        reasons=tuple(f"worker {k}: {r}" for k, h in enumerate(healths) for r in h.reasons),
        host_steal=max((h.host_steal for h in healths if h.host_steal is not None), default=None),
        loop="+".join(sorted({h.loop for h in healths if h.loop})) or None,
    )
