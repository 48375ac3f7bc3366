"""The generator's self-watch: loop lag and CPU seen for real, trust verdicts from the bounds."""

from __future__ import annotations

import asyncio
import time

import pytest

from soak.results import Outcome, Result
from soak.selfwatch import (
    HealthBounds,
    SelfWatch,
    WatchReading,
    assess,
    host_cpu_ticks,
    merge_health,
    send_lag_p99,
    steal_share,
    thread_cpu_wait,
)


async def test_a_blocked_event_loop_shows_as_loop_lag() -> None:
    watch = SelfWatch(interval=0.005)
    watch.start()
    await asyncio.sleep(0.03)  # a few clean probes
    time.sleep(0.12)  # block the loop: the pending probe wakes ~120 ms late
    await asyncio.sleep(0.02)
    reading = await watch.stop()
    assert reading.samples >= 3
    assert reading.loop_lag_max >= 0.09
    assert reading.loop_lag_mean < reading.loop_lag_max


async def test_an_idle_loop_has_little_lag_and_low_cpu() -> None:
    async with SelfWatch(interval=0.005) as watch:
        await asyncio.sleep(0.15)
    reading = watch.reading()
    assert reading.samples >= 10
    # idle (0.2 ms measured) vs a lag read in ms (x1000) or a loop kept blocked: 100x headroom
    assert reading.loop_lag_mean < 0.02  # mean, not max: CI cores are shared
    assert reading.cpu_ratio < 0.5


async def test_busy_process_shows_a_high_cpu_ratio() -> None:
    watch = SelfWatch(interval=0.05)
    watch.start()
    end = time.perf_counter() + 0.2
    while time.perf_counter() < end:
        pass
    reading = await watch.stop()
    # a busy thread is either running or waiting for a core others took (shared CI machines)
    assert reading.cpu_wait is not None
    assert (reading.cpu + reading.cpu_wait) / reading.wall > 0.8
    assert reading.wall >= 0.2


async def test_injected_clocks_drive_the_reading() -> None:
    wall = [10.0]
    cpu = [1.0]

    async def sleep(seconds: float) -> None:
        wall[0] += seconds + 0.003  # every wake-up 3 ms late
        cpu[0] += seconds / 2
        await asyncio.sleep(0)

    watch = SelfWatch(0.01, clock=lambda: wall[0], cpu_clock=lambda: cpu[0], sleep=sleep)
    watch.start()
    for _ in range(20):
        await asyncio.sleep(0)
    reading = await watch.stop()
    assert reading.samples >= 5
    assert reading.loop_lag_max == pytest.approx(0.003)
    assert reading.loop_lag_mean == pytest.approx(0.003)
    assert reading.cpu_ratio == pytest.approx(0.01 / 2 / 0.013, rel=0.01)


def reading(
    cpu_ratio: float = 0.2, lag: float = 0.001, wall: float = 10.0, wait: float | None = 0.1
) -> WatchReading:
    return WatchReading(
        wall=wall,
        cpu=cpu_ratio * wall,
        loop_lag_max=lag,
        loop_lag_mean=lag,
        samples=100,
        cpu_wait=wait,
    )


def test_healthy_generator_is_trusted() -> None:
    health = assess(reading(), send_lag_p99=0.002, drops=0)
    assert health.trusted
    assert health.reasons == ()
    assert health.cpu_ratio == pytest.approx(0.2)
    assert health.loop_lag_max == 0.001
    assert health.send_lag_p99 == 0.002


@pytest.mark.parametrize(
    ("kwargs", "lag_p99", "drops", "reason"),
    [
        ({"cpu_ratio": 0.95}, 0.0, 0, "generator CPU 95% of one core > 90%"),
        ({"lag": 0.2}, 0.0, 0, "event-loop lag max 200.0 ms > 50 ms"),
        ({}, 0.03, 0, "send lag p99 30.0 ms > 10 ms"),
        ({}, 0.0, 7, "7 requests dropped at the in-flight cap"),
        (
            {"wait": 4.0},
            0.0,
            0,
            "generator waited for a CPU 40% of the time > 20% (other processes on its core)",
        ),
    ],
)
def test_each_bound_makes_the_run_untrusted_with_a_reason(kwargs, lag_p99, drops, reason) -> None:
    health = assess(reading(**kwargs), send_lag_p99=lag_p99, drops=drops)
    assert not health.trusted
    assert health.reasons == (reason,)


def test_bounds_are_arguments_and_short_runs_do_not_judge_cpu() -> None:
    strict = HealthBounds(max_cpu_ratio=0.5, max_loop_lag=0.0005, max_send_lag_p99=0.001)
    health = assess(reading(cpu_ratio=0.6, lag=0.001), send_lag_p99=0.002, drops=0, bounds=strict)
    assert len(health.reasons) == 3
    short = assess(reading(cpu_ratio=1.0, wall=0.2), send_lag_p99=0.0, drops=0)
    assert short.trusted
    assert short.cpu_ratio == pytest.approx(1.0)


def test_send_lag_p99_is_nearest_rank() -> None:
    results = [Result(i, float(i), i + i / 1000, i + 1.0, Outcome.OK) for i in range(100)]
    assert send_lag_p99(results) == pytest.approx(0.098)
    assert send_lag_p99([]) == 0.0
    early = [Result(0, 1.0, 0.9999, 2.0, Outcome.OK)]
    assert send_lag_p99(early) == 0.0


def test_bad_interval_is_rejected() -> None:
    with pytest.raises(ValueError, match="self-watch interval 0 must be > 0"):
        SelfWatch(0)


async def test_run_queue_wait_is_read_from_the_loop_thread() -> None:
    waits = iter([1.0, 1.75])
    watch = SelfWatch(0.01, wait_clock=lambda: next(waits))
    watch.start()
    seen = await watch.stop()
    assert seen.cpu_wait == pytest.approx(0.75)
    unknown = SelfWatch(0.01, wait_clock=lambda: None)
    unknown.start()
    assert (await unknown.stop()).cpu_wait_ratio is None
    no_wait = reading(wait=None)
    assert no_wait.cpu_wait_ratio is None
    assert assess(no_wait, send_lag_p99=0.0, drops=0).trusted


def test_linux_reports_the_thread_run_queue_wait() -> None:
    wait = thread_cpu_wait()
    assert wait is not None  # CI and production run on Linux
    assert wait >= 0.0


async def test_host_steal_is_read_between_start_and_reading_and_never_distrusts() -> None:
    ticks = [(100, 10_000)]  # (steal, total) of /proc/stat's first line
    watch = SelfWatch(0.01, steal_clock=lambda: ticks[0])
    watch.start()
    ticks[0] = (145, 11_000)  # 45 of 1,000 ticks stolen while the phase ran
    reading_ = await watch.stop()
    assert reading_.host_steal == pytest.approx(0.045)
    health = assess(reading_, send_lag_p99=0.002, drops=0)
    assert health.trusted and health.host_steal == pytest.approx(0.045) and not health.reasons
    merged = merge_health([health, assess(reading(), send_lag_p99=0.0, drops=0)],
                          send_lag_p99=0.002)  # fmt: skip
    assert merged.host_steal == pytest.approx(0.045)  # the same machine: the worst worker


@pytest.mark.parametrize(
    ("start", "end", "share"),
    [((0, 100), (5, 200), 0.05), (None, (5, 200), None), ((0, 100), None, None),
     ((0, 100), (0, 100), None), ((9, 100), (5, 200), 0.0), ((0, 100), (500, 200), 1.0)],
)  # fmt: skip
def test_steal_share_of_two_readings(start, end, share) -> None:  # type: ignore[no-untyped-def]
    assert steal_share(start, end) == (None if share is None else pytest.approx(share))


def test_linux_reports_the_machines_steal_ticks() -> None:
    ticks = host_cpu_ticks()
    assert ticks is not None and 0 <= ticks[0] <= ticks[1] and ticks[1] > 0
