"""The open-loop load engine: request i goes out at t0 + offset(i), whatever the answers do.

Each request is its own task, started at its due time, so a slow gateway cannot slow the
arrivals down (no coordinated omission: `send` gets the intended time and latency is measured
from it). An in-flight cap turns an overloaded generator or gateway into counted drops instead
of an unbounded queue. The run stops by itself after its duration or count, then drains the
in-flight requests for at most `drain_timeout` seconds and counts what it had to cancel as
timeouts. The generator watches itself meanwhile (`soak.selfwatch`) and says whether its own
numbers can be trusted.

Per-request work is kept minimal (no logging, no allocation beyond the task) because this loop
is the ceiling on the rate one core can drive.
"""

from __future__ import annotations

import asyncio
import gc
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from soak.eventloop import loop_name
from soak.pacing import Arrivals, check_bounds, due_schedule, make_arrivals
from soak.results import Outcome, Result
from soak.selfwatch import HealthBounds, SelfWatch, assess, send_lag_p99
from soak.summary import GeneratorHealth

Send = Callable[[int, float], Awaitable[Result]]
"""One request: `send(seq, intended)` → its Result; a failed request is a Result, not an error."""

_MAX_SLEEP = 0.25
"""Longest single sleep, so a stop request is noticed quickly even at very low rates."""
_MIN_SLEEP = 0.001
"""Shortest sleep. The default loop's epoll waits whole milliseconds anyway; uvloop (libuv
timers in whole ms) would otherwise spin on sub-millisecond sleeps and burn the core whose
CPU share the self-watch reads. Requests due within it go out together, late by < 1 ms."""
_BURST = 256
"""Overdue requests dispatched back to back before yielding to the loop. A generator behind
schedule must still let its requests and answers run, but one loop iteration costs as much as
the answers it handles, so a small burst caps the catch-up rate at burst / iteration time."""


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to run: a rate and arrival shape, bounded by duration and/or count."""

    rate: float
    duration: float | None = None
    count: int | None = None
    arrival: str = "constant"
    seed: int = 1
    max_inflight: int = 2000
    drain_timeout: float = 30.0
    worker: int = 0
    """This engine's share of the schedule: requests `worker`, `worker + workers`, ...
    (`soak.workers` runs one share per process; the default is the whole schedule)."""
    workers: int = 1

    def __post_init__(self) -> None:
        self.arrivals()  # validates rate and arrival
        check_bounds(self.duration, self.count)
        if not (isinstance(self.workers, int) and 0 <= self.worker < self.workers):
            raise ValueError(
                f"worker {self.worker!r} of {self.workers!r}: need 0 <= worker < workers"
            )
        if isinstance(self.max_inflight, bool) or not isinstance(self.max_inflight, int):
            raise ValueError(f"max_inflight {self.max_inflight!r} must be an integer >= 1")
        if self.max_inflight < 1:
            raise ValueError(f"max_inflight {self.max_inflight!r} must be >= 1")
        if not (math.isfinite(self.drain_timeout) and self.drain_timeout >= 0):
            raise ValueError(f"drain_timeout {self.drain_timeout!r} must be >= 0 seconds")

    def arrivals(self) -> Arrivals:
        return make_arrivals(self.arrival, self.rate, self.seed)


@dataclass(slots=True)
class LoadRun:
    """What a run did. Times are on the engine's clock; `elapsed` runs from t0 to drain end."""

    spec: LoadSpec
    t0: float
    results: list[Result] = field(default_factory=list)
    sent: int = 0
    """Requests started (dispatched to `send`)."""
    drops: int = 0
    """Due requests not sent because `max_inflight` requests were already in flight."""
    peak_inflight: int = 0
    """Most requests in flight at once (the stress phase's ~rate × latency)."""
    elapsed: float = 0.0
    first_send: float = 0.0
    last_send: float = 0.0
    cancelled: int = 0
    """In-flight requests cancelled at the drain timeout (recorded as timeouts)."""
    send_errors: int = 0
    """`send` raised instead of returning a Result (a sender bug; recorded as bad_response)."""
    callback_errors: int = 0
    """`on_result` raised (a bug in the callback; the result itself is kept)."""
    first_error: str | None = None
    stopped: bool = False
    """The run was stopped early by its `stop` event."""
    generator: GeneratorHealth | None = None
    worker_cpu_s: float = 0.0
    """CPU seconds worker processes spent on the load (`soak.workers`; 0 when it ran here)."""

    @property
    def target_rate(self) -> float:
        return self.spec.rate

    @property
    def scheduled(self) -> int:
        """Requests that fell due: sent + dropped."""
        return self.sent + self.drops

    @property
    def send_window(self) -> float:
        """Seconds between the first and the last dispatch."""
        return max(0.0, self.last_send - self.first_send)

    @property
    def achieved_rate(self) -> float:
        """Dispatch rate actually held: (sent − 1) intervals over the send window."""
        if self.sent < 2 or self.send_window <= 0:
            return 0.0
        return (self.sent - 1) / self.send_window


async def run_load(
    spec: LoadSpec,
    send: Send,
    *,
    clock: Callable[[], float] = time.perf_counter,
    sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
    on_result: Callable[[Result], object] | None = None,
    stop: asyncio.Event | None = None,
    watch: SelfWatch | None = None,
    bounds: HealthBounds | None = None,
    start: float | None = None,
) -> LoadRun:
    """Run `spec` open-loop through `send`; return every Result, drops and generator health.

    `stop` ends the sending early (the in-flight requests are still drained). `watch` defaults
    to a real `SelfWatch`; `bounds` are its trust limits. `start` is t0 on `clock` (default:
    now), so worker processes sharing a schedule start it together.
    """
    loop = asyncio.get_running_loop()
    create_task = loop.create_task
    watch = watch if watch is not None else SelfWatch()
    cap = spec.max_inflight
    results: list[Result] = []
    append = results.append
    tasks: set[asyncio.Task[None]] = set()
    idle = asyncio.Event()
    inflight = 0
    run = LoadRun(spec=spec, t0=0.0, results=results)

    async def one(seq: int, intended: float) -> None:
        nonlocal inflight
        result: Result | None = None
        try:
            result = await send(seq, intended)
        except asyncio.CancelledError:
            run.cancelled += 1
            result = Result(seq, intended, intended, clock(), Outcome.TIMEOUT)
            raise
        except Exception as exc:
            run.send_errors += 1
            if run.first_error is None:
                run.first_error = f"{type(exc).__name__}: {exc}"
            result = Result(seq, intended, intended, clock(), Outcome.BAD_RESPONSE)
        finally:
            inflight -= 1
            if result is not None:
                append(result)
                if on_result is not None:
                    try:
                        on_result(result)
                    except Exception as exc:  # a progress/metrics bug must not cost results
                        run.callback_errors += 1
                        if run.first_error is None:
                            run.first_error = f"on_result {type(exc).__name__}: {exc}"
            if not inflight:
                idle.set()

    # Objects alive before the run (modules, sessions, earlier results) never become garbage
    # during it: keep full collections from re-scanning them, which showed as 50-150 ms pauses
    # of the loop at a few thousand requests per second.
    gc.freeze()
    watch.start()
    try:
        t0 = run.t0 = clock() if start is None else start
        burst = 0
        for seq, offset in due_schedule(
            spec.arrivals(),
            duration=spec.duration,
            count=spec.count,
            first=spec.worker,
            every=spec.workers,
        ):
            due = t0 + offset
            now = clock()
            if due > now:
                burst = 0
                while due > now and not (stop is not None and stop.is_set()):
                    delay = due - now
                    await sleep(min(max(delay, _MIN_SLEEP), _MAX_SLEEP))
                    now = clock()
            else:
                burst += 1
                if burst >= _BURST:
                    burst = 0
                    await sleep(0)
            if stop is not None and stop.is_set():
                run.stopped = True
                break
            if inflight >= cap:
                run.drops += 1
                continue
            inflight += 1
            if inflight > run.peak_inflight:
                run.peak_inflight = inflight
            task = create_task(one(seq, due))
            tasks.add(task)
            task.add_done_callback(tasks.discard)
            if not run.sent:
                run.first_send = now
            run.last_send = now
            run.sent += 1
        await _drain(tasks, idle, spec.drain_timeout, lambda: inflight, sleep)
    finally:
        if tasks:  # cancelled from outside, or drain timed out: cancel what is still running
            pending = list(tasks)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        reading = await watch.stop()
        gc.unfreeze()
    run.elapsed = clock() - run.t0
    run.generator = assess(reading, send_lag_p99=send_lag_p99(results), drops=run.drops,
                           bounds=bounds, loop=loop_name(loop))  # fmt: skip
    # Freezing moved the survivors of every young collection out of the count that makes a
    # full collection come due, so none ever does: without this, a process running phase
    # after phase kept each run's cyclic garbage (+1.1 MiB a run, bench/bench_reliability.py).
    # Collected here, after the measured window.
    gc.collect()
    return run


async def _drain(
    tasks: set[asyncio.Task[None]],
    idle: asyncio.Event,
    timeout: float,
    inflight: Callable[[], int],
    sleep: Callable[[float], Awaitable[object]],
) -> None:
    """Wait until nothing is in flight, or `timeout` seconds on the engine's own clock."""
    if not inflight():
        return
    idle.clear()
    waiter = asyncio.ensure_future(idle.wait())
    timer = asyncio.ensure_future(sleep(timeout))
    try:
        await asyncio.wait((waiter, timer), return_when=asyncio.FIRST_COMPLETED)
    finally:
        for fut in (waiter, timer):
            fut.cancel()
        await asyncio.gather(waiter, timer, return_exceptions=True)
