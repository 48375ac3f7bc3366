"""Scheduling: triggers from an injected clock, and the real APScheduler's missed, skipped and
overlapping runs read back as metric values. Nothing sleeps: the loop is only yielded to."""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import CollectorRegistry

from soak.config.cron import fire_times, parse_cron
from soak.config.daemon import PlanConfig
from soak.metrics import SoakMetrics
from soak.scheduler import PlanScheduler, build_trigger, first_fire

T0 = datetime(2026, 1, 1, 0, 0, 30, tzinfo=UTC).timestamp()


async def settle(done: Callable[[], bool], rounds: int = 200) -> None:
    """Yield to the loop until `done()` (the scheduler works in call_soon callbacks and tasks)."""
    for _ in range(rounds):
        if done():
            return
        await asyncio.sleep(0)
    raise AssertionError("the scheduler did not get there")


class Runs:
    """A plan runner whose runs end only when released; records what ran."""

    def __init__(self) -> None:
        self.started: list[str] = []
        self.release = asyncio.Event()
        self.status = "passed"

    async def __call__(self, plan: PlanConfig) -> str:
        self.started.append(plan.name)
        await self.release.wait()
        return self.status


def value(registry: CollectorRegistry, name: str, **labels: str) -> float | None:
    return registry.get_sample_value(name, labels)


def test_triggers_follow_the_given_now() -> None:
    now = datetime.fromtimestamp(T0, UTC)
    cron = PlanConfig(name="c", phases=("overhead",), cron="*/5 * * * *")
    interval = PlanConfig(name="i", phases=("overhead",), interval=120)
    eager = PlanConfig(name="e", phases=("overhead",), interval=120, run_on_start=True)
    assert first_fire(cron, build_trigger(cron, now), now).timestamp() == T0 + 270  # 00:05:00
    trig = build_trigger(interval, now)
    first = first_fire(interval, trig, now)
    assert first.timestamp() == T0 + 120
    assert trig.get_next_fire_time(first, first).timestamp() == T0 + 240
    assert first_fire(eager, build_trigger(eager, now), now) == now


@pytest.mark.parametrize(
    "expression",
    ["*/15 * * * *", "0 9 * * 1-5", "30 2 * * sun", "0 0 13 * 5", "5/20 8-17 */2 * *",
     "0 0 29 2 *", "0 12 1,15 jan-jun mon"],
)  # fmt: skip
def test_the_trigger_fires_when_the_config_grammar_says(expression: str) -> None:
    """APScheduler runs the expression as `soak.config.cron` reads it (weekdays from Sunday,
    the day fields ORed), so validation, dashboards and the daemon agree on every fire time."""
    now = datetime(2026, 1, 5, 0, 0, 30, tzinfo=UTC)
    trigger = build_trigger(PlanConfig(name="c", phases=("overhead",), cron=expression), now)
    expected = list(itertools.islice(fire_times(parse_cron(expression), now), 40))
    got, previous = [], None
    for _ in expected:
        previous = trigger.get_next_fire_time(previous, now)
        got.append(previous)
        now = previous + timedelta(microseconds=1)
    assert got == expected


async def test_next_fire_times_are_exported_from_the_injected_clock(
    registry: CollectorRegistry, clock
) -> None:
    metrics = SoakMetrics(registry)
    clock.now = T0
    sched = PlanScheduler(Runs(), metrics, clock=clock)
    plans = [
        PlanConfig(name="hourly", phases=("overhead",), cron="0 * * * *"),
        PlanConfig(name="quick", phases=("overhead",), interval=90),
    ]
    sched.start(plans, paused=True)
    try:
        assert sched.next_run_times() == {"hourly": T0 + 3570, "quick": T0 + 90}
        assert value(registry, "soak_plan_next_run_timestamp_seconds", plan="hourly") == T0 + 3570
        assert value(registry, "soak_plan_next_run_timestamp_seconds", plan="quick") == T0 + 90
        assert value(registry, "soak_scheduler_missed_runs_total", plan="quick") == 0
        assert value(registry, "soak_scheduler_skipped_runs_total", plan="quick") == 0
        # A reload that drops a plan removes its series; an unchanged plan keeps its time,
        # a changed one is rescheduled from now, a new one with run_on_start runs now.
        clock.advance(60)
        eager = PlanConfig(name="eager", phases=("overhead",), interval=600, run_on_start=True)
        sched.set_plans([plans[1], eager])
        assert sched.next_run_times() == {"quick": T0 + 90, "eager": T0 + 60}
        assert value(registry, "soak_plan_next_run_timestamp_seconds", plan="hourly") is None
        slower = PlanConfig(name="quick", phases=("overhead",), interval=300)
        sched.set_plans([slower, eager])  # eager unchanged; a reload is not a start
        assert sched.next_run_times() == {"quick": T0 + 360, "eager": T0 + 60}
        changed = PlanConfig(name="eager", phases=("stress",), interval=600, run_on_start=True)
        sched.set_plans([slower, changed])
        assert sched.next_run_times()["eager"] == T0 + 660
    finally:
        sched.shutdown()


async def test_a_run_missed_beyond_its_grace_is_counted(registry: CollectorRegistry) -> None:
    """The clock says the daemon 'started' an hour ago: the first run is an hour late."""
    metrics = SoakMetrics(registry)
    runs = Runs()
    start = time.time() - 3600
    sched = PlanScheduler(runs, metrics, clock=lambda: start)
    plan = PlanConfig(
        name="late", phases=("overhead",), interval=7200, run_on_start=True, misfire_grace_time=60
    )
    sched.start([plan])
    try:
        await settle(lambda: value(registry, "soak_scheduler_missed_runs_total", plan="late") == 1)
        assert runs.started == []  # missed, never run
        assert value(
            registry, "soak_plan_next_run_timestamp_seconds", plan="late"
        ) == pytest.approx(start + 7200)
    finally:
        sched.shutdown()


async def test_overlap_and_own_previous_run_are_skipped(registry: CollectorRegistry) -> None:
    metrics = SoakMetrics(registry)
    runs = Runs()
    sched = PlanScheduler(runs, metrics)
    long = PlanConfig(name="long", phases=("stress",), interval=3600, run_on_start=True)
    other = PlanConfig(name="other", phases=("overhead",), interval=3600)
    sched.start([long, other])
    try:
        await settle(lambda: runs.started == ["long"])
        assert sched.running == "long"
        sched.run_now("other")  # another plan due while `long` runs: the global lock skips it
        await settle(
            lambda: value(registry, "soak_scheduler_skipped_runs_total", plan="other") == 1
        )
        sched.run_now("long")  # its own next fire while still running: max_instances=1
        await settle(lambda: value(registry, "soak_scheduler_skipped_runs_total", plan="long") == 1)
        assert runs.started == ["long"]
        assert value(registry, "soak_scheduler_missed_runs_total", plan="long") == 0

        runs.status = "failed"
        runs.release.set()
        await settle(lambda: sched.running is None)
        assert value(registry, "soak_plan_runs_total", plan="long", status="failed") == 1
        assert value(registry, "soak_plan_last_run_timestamp_seconds", plan="long") > 0
        sched.run_now("other")  # free again: it runs
        await settle(lambda: runs.started == ["long", "other"])
        await settle(lambda: value(registry, "soak_plan_runs_total", plan="other", status="failed"))
    finally:
        sched.shutdown()


async def test_drain_waits_for_the_run_then_cancels_it(registry: CollectorRegistry) -> None:
    metrics = SoakMetrics(registry)
    runs = Runs()
    sched = PlanScheduler(runs, metrics)
    sched.start([PlanConfig(name="p", phases=("overhead",), interval=3600, run_on_start=True)])
    try:
        await settle(lambda: runs.started == ["p"])
        sched.pause()
        assert await sched.drain(0) is False  # did not end by itself: cancelled
        await settle(lambda: sched.running is None)
        assert value(registry, "soak_plan_runs_total", plan="p", status="aborted") == 1
        assert await sched.drain(0) is True  # nothing left to drain
    finally:
        sched.shutdown()
