"""The 1 Hz observer of the gateway process: CPU %, RSS, fds and threads, children included.

The only psutil user in the tester. Uvicorn, gunicorn and node clusters serve from child
processes, so by default a sample sums the process and all its descendants. Sampling runs in a
worker thread so /proc reads never stall the load generator's event loop. A process that
vanishes ends the watch quietly; what was sampled until then is kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import psutil

from soak.summary import ProcessSummary


@dataclass(frozen=True, slots=True)
class Sample:
    """One look at the process tree. `cpu_percent` is of one core (200 = two cores busy) over
    the time since the previous sample; None on the first sample, which has no previous."""

    t: float
    cpu_percent: float | None
    rss: int
    fds: int
    threads: int
    procs: int


class _Tree:
    """Reads a process and (optionally) its descendants, keeping per-pid CPU times so each
    sample's CPU is the time every process spent since it was last seen."""

    def __init__(self, pid: int, include_children: bool) -> None:
        self.root = psutil.Process(pid)
        self.include_children = include_children
        self._cpu: dict[int, float] = {}
        self._last_t: float | None = None

    def sample(self, now: float) -> Sample:
        procs = [self.root]
        if self.include_children:
            with contextlib.suppress(psutil.Error):
                procs += self.root.children(recursive=True)
        cpu_now: dict[int, float] = {}
        rss = fds = threads = 0
        for proc in procs:
            try:
                with proc.oneshot():
                    times = proc.cpu_times()
                    mem = proc.memory_info()
                    nthreads = proc.num_threads()
                    nfds = proc.num_fds()
            except psutil.NoSuchProcess:
                if proc is self.root:
                    raise
                continue
            except psutil.AccessDenied:
                continue
            cpu_now[proc.pid] = times.user + times.system
            rss += mem.rss
            threads += nthreads
            fds += nfds
        cpu_percent = None
        if self._last_t is not None and now > self._last_t:
            spent = sum(max(0.0, c - self._cpu.get(pid, 0.0)) for pid, c in cpu_now.items())
            cpu_percent = 100.0 * spent / (now - self._last_t)
        self._cpu, self._last_t = cpu_now, now
        return Sample(now, cpu_percent, rss, fds, threads, len(cpu_now))


class ProcessWatch:
    """Samples a process tree every `interval` seconds in an asyncio task until `stop()`."""

    def __init__(
        self,
        pid: int,
        interval: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        include_children: bool = True,
        on_sample: Callable[[Sample], object] | None = None,
        keep: bool = True,
    ) -> None:
        self.pid = pid
        self.keep = keep
        """False: samples only go to `on_sample` (a watch for the daemon's life stays bounded)."""
        self.on_sample = on_sample
        """Called with each sample as it is taken (live gauges)."""
        self.interval = interval
        self.clock = clock
        self.include_children = include_children
        self.samples: list[Sample] = []
        self.vanished = False
        """True when the process went away during the watch."""
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is not None:
            raise RuntimeError("watch already started")
        self._task = asyncio.get_running_loop().create_task(self._run(), name="procwatch")

    async def _run(self) -> None:
        try:
            tree = await asyncio.to_thread(_Tree, self.pid, self.include_children)
        except psutil.Error:
            self.vanished = True
            return
        due = self.clock()
        while True:
            try:
                sample = await asyncio.to_thread(tree.sample, self.clock())
            except psutil.NoSuchProcess:
                self.vanished = True
                return
            if self.keep:
                self.samples.append(sample)
            if self.on_sample is not None:
                self.on_sample(sample)
            due += self.interval
            now = self.clock()
            if due < now:  # fell behind (suspended host): skip, never burst
                due = now
            await asyncio.sleep(due - now)

    def cancel(self) -> None:
        """End the watch without waiting (no sample is delivered after this)."""
        self.on_sample = None
        if self._task is not None:
            self._task.cancel()

    async def stop(self) -> list[Sample]:
        """End the watch and return its samples (also when the process vanished)."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return list(self.samples)


def find_pid(cmdline_regex: str) -> int | None:
    """The oldest process (not this one) whose command line matches the regex, or None."""
    pattern = re.compile(cmdline_regex)
    best: tuple[float, int] | None = None
    for proc in psutil.process_iter(["pid", "cmdline", "create_time"]):
        info = proc.info
        if info["pid"] == os.getpid() or not info["cmdline"]:
            continue
        if pattern.search(" ".join(info["cmdline"])):
            key = (info["create_time"] or 0.0, info["pid"])
            if best is None or key < best:
                best = key
    return None if best is None else best[1]


def pid_from_file(path: str | Path) -> int | None:
    """The PID written in a pid file, or None when the file is missing or not a number."""
    try:
        return int(Path(path).read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def summarize(samples: Sequence[Sample]) -> ProcessSummary:
    """The seed's CPU/RSS table over a phase: averages and peaks (CPU % of one core, bytes)."""
    if not samples:
        return ProcessSummary(samples=0, cpu_avg=0.0, cpu_peak=0.0, rss_avg=0.0, rss_peak=0.0)
    cpus = [s.cpu_percent for s in samples if s.cpu_percent is not None]
    rss = [float(s.rss) for s in samples]
    return ProcessSummary(
        samples=len(samples),
        cpu_avg=sum(cpus) / len(cpus) if cpus else 0.0,
        cpu_peak=max(cpus, default=0.0),
        rss_avg=sum(rss) / len(rss),
        rss_peak=max(rss),
        rss_initial=rss[0],
        rss_final=rss[-1],
        fds_peak=max(s.fds for s in samples),
        threads_peak=max(s.threads for s in samples),
    )


def rss_slope(samples: Sequence[Sample], warmup_s: float) -> float | None:
    """Least-squares RSS trend in bytes per second over the samples after `warmup_s` seconds
    from the first; None with fewer than two samples (or no time spread) to fit."""
    if not samples:
        return None
    start = samples[0].t + warmup_s
    return slope([(s.t, float(s.rss)) for s in samples if s.t >= start])


class LongTrend:
    """RSS over the last `window` seconds, one point per `step` seconds in a ring (bounded
    however long the daemon lives), and its least-squares slope: the long-window memory verdict.
    The first `warmup` seconds of a process are left out; `reset()` on a new process (a slope
    across a restart is no trend)."""

    def __init__(self, window: float, step: float = 10.0, warmup: float = 0.0) -> None:
        self.window, self.step, self.warmup = window, step, warmup
        self.points: deque[tuple[float, float]] = deque(maxlen=max(2, int(window / step) + 1))
        self._first: float | None = None

    def add(self, sample: Sample) -> None:
        """Keep `sample` if `step` has passed since the last point and `warmup` since the
        first sample of this process (its start-up allocations are no trend)."""
        if self._first is None:
            self._first = sample.t
        if sample.t - self._first < self.warmup:
            return
        if self.points and sample.t - self.points[-1][0] < self.step:
            return
        self.points.append((sample.t, float(sample.rss)))

    def span(self) -> float:
        """Seconds between the oldest and the newest point."""
        return self.points[-1][0] - self.points[0][0] if len(self.points) > 1 else 0.0

    def slope(self) -> float | None:
        """Bytes per second over the ring; None with fewer than two points."""
        return slope(list(self.points))

    def reset(self) -> None:
        self.points.clear()
        self._first = None


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of (t, value) points; None with fewer than two or no time spread."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_t = sum(t for t, _ in points) / n
    mean_r = sum(r for _, r in points) / n
    var = sum((t - mean_t) ** 2 for t, _ in points)
    if var == 0:
        return None
    return sum((t - mean_t) * (r - mean_r) for t, r in points) / var
