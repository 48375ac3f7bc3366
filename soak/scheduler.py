"""Phase plans on a clock: APScheduler 3.x (asyncio) with cron and interval triggers.

The only apscheduler importer. Job defaults are set explicitly (3.x would otherwise skip a run
silently after a 1 s misfire grace); one plan runs at a time across all plans (a lock): a plan
due while another runs is *skipped* and counted, as is a plan due while its own previous run
is still going (`max_instances=1`); a fire time missed by more than the plan's grace is
*missed* and counted. Each plan's next fire time is exported, so an alert can tell "a scheduled
run did not happen" from "the daemon is down".

Cron expressions are read by `soak.config.cron` (the one grammar, shared with config
validation and the dashboards); the triggers here only execute them. Trigger start dates and
first runs come from the injected `clock`, so tests pin the schedule without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Iterable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MAX_INSTANCES,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
    JobEvent,
)
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.base import BaseTrigger
from apscheduler.triggers.combining import OrTrigger
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from soak.config.cron import WEEKDAY_NAMES, Cron, parse_cron
from soak.config.daemon import PlanConfig
from soak.metrics import SoakMetrics

log = logging.getLogger(__name__)

PlanRunner = Callable[[PlanConfig], Awaitable[str]]
"""Runs one plan to its end and returns the run's status (passed, failed, aborted, error)."""

_EVENTS = (
    EVENT_JOB_MISSED | EVENT_JOB_MAX_INSTANCES | EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED
    | EVENT_JOB_ERROR
)  # fmt: skip


def cron_trigger(cron: Cron, jitter: int | None = None) -> BaseTrigger:
    """APScheduler's trigger for a parsed expression, in UTC: the values are spelled out so
    APScheduler runs what `soak.config.cron` means (its own crontab parser numbers weekdays
    from Monday, and ANDs the two day fields where cron ORs them)."""

    def spell(values: frozenset[int], every: range) -> str:
        return "*" if values == frozenset(every) else ",".join(map(str, sorted(values)))

    times = {
        "minute": spell(cron.minutes, range(60)),
        "hour": spell(cron.hours, range(24)),
        "month": spell(cron.months, range(1, 13)),
        "timezone": UTC,
    }
    days = spell(cron.days, range(1, 32))
    weekdays = ",".join(WEEKDAY_NAMES[d] for d in sorted(cron.weekdays))
    weekdays = "*" if len(cron.weekdays) == 7 else weekdays
    if not cron.days_or_weekdays:
        return CronTrigger(day=days, day_of_week=weekdays, jitter=jitter, **times)
    either = [CronTrigger(day=days, **times), CronTrigger(day_of_week=weekdays, **times)]
    return OrTrigger(either, jitter=jitter)


def build_trigger(plan: PlanConfig, now: datetime) -> BaseTrigger:
    """The plan's trigger, in UTC; an interval's first fire is one interval after `now`."""
    jitter = int(plan.jitter) or None
    if plan.cron is not None:
        return cron_trigger(parse_cron(plan.cron), jitter)
    assert plan.interval is not None  # validated: exactly one of cron / interval
    step = timedelta(seconds=plan.interval)
    return IntervalTrigger(
        seconds=plan.interval, start_date=now + step, timezone=UTC, jitter=jitter
    )


class ScheduleError(ValueError):
    """A plan the scheduler cannot hold (its trigger's date arithmetic overflows): one line
    naming the plan's key, e.g. `schedule[0].interval`."""


def first_fire(
    plan: PlanConfig, trigger: BaseTrigger, now: datetime, *, new: bool = True
) -> datetime | None:
    """When the plan first runs: `now` for a `new` plan with run_on_start, else its trigger's
    next time."""
    return now if plan.run_on_start and new else trigger.get_next_fire_time(None, now)


@contextlib.contextmanager
def _naming(index: int, plan: PlanConfig, key: str) -> Iterator[None]:
    """Date arithmetic that overflows inside becomes a ScheduleError naming `key`."""
    try:
        yield
    except (OverflowError, ValueError) as err:
        raise ScheduleError(
            f"schedule[{index}].{key}: plan '{plan.name}' cannot be scheduled: {err}"
        ) from None


class PlanScheduler:
    """Runs plans through `runner` on their triggers, one at a time, counting what it skips."""

    def __init__(
        self,
        runner: PlanRunner,
        metrics: SoakMetrics,
        *,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._runner = runner
        self._metrics = metrics
        self._clock = clock
        self._plans: dict[str, PlanConfig] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[str] | None = None
        self.running: str | None = None
        """The plan running now, if any."""
        self._closing = False
        self._sched = AsyncIOScheduler(
            timezone=UTC,
            job_defaults={"coalesce": True, "misfire_grace_time": 300, "max_instances": 1},
        )
        self._sched.add_listener(self._on_event, _EVENTS)

    @property
    def started(self) -> bool:
        return bool(self._sched.running)

    def start(self, plans: Iterable[PlanConfig], *, paused: bool = False) -> None:
        """Start scheduling `plans` (needs the running event loop)."""
        self._sched.start(paused=paused)
        self.set_plans(plans)

    def check(self, plans: Iterable[PlanConfig]) -> None:
        """Build every plan's job on a scratch scheduler, touching nothing here: ScheduleError
        for a plan this scheduler could not hold (a reload validates before it swaps)."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        scratch = AsyncIOScheduler(timezone=UTC)  # never started: add_job only validates
        for index, plan in enumerate(plans):
            scratch.add_job(**self._job(index, plan, now, new=plan.name not in self._plans))

    def set_plans(self, plans: Iterable[PlanConfig]) -> None:
        """Replace the schedule (config reload); a run in progress goes on to its end.

        An unchanged plan keeps its next fire time; a new or changed one is scheduled from
        now, and only a new one honours `run_on_start` (a reload is not a start). Every job
        is built before anything changes: on ScheduleError the old plans stay scheduled."""
        now = datetime.fromtimestamp(self._clock(), UTC)
        listed = list(plans)
        old, new = self._plans, {plan.name: plan for plan in listed}
        jobs = [
            self._job(index, plan, now, new=plan.name not in old)
            for index, plan in enumerate(listed)
            if old.get(plan.name) != plan
        ]
        for name in set(old) - set(new):
            self._sched.remove_job(name)
            self._metrics.forget_plan(name)
        self._plans = new
        for job in jobs:
            self._sched.add_job(**job)
            self._metrics.init_plan(job["id"])
            self._refresh(job["id"])

    def _job(self, index: int, plan: PlanConfig, now: datetime, *, new: bool) -> dict[str, Any]:
        """`add_job` arguments for `plan` (the `index`-th of the schedule). The trigger's date
        arithmetic is tried up to the run after the first, delayed by the whole jitter and
        misfire grace, so a plan that fits now also fits when it fires."""
        with _naming(index, plan, "jitter"):  # applied inside the trigger: try it alone first
            now + timedelta(seconds=plan.jitter)
        with _naming(index, plan, "cron" if plan.cron is not None else "interval"):
            trigger = build_trigger(plan, now)
            first = first_fire(plan, trigger, now, new=new)
            later = None if first is None else trigger.get_next_fire_time(first, first)
        fires = [when for when in (first, later) if when is not None]
        with _naming(index, plan, "jitter"):
            fires = [when + timedelta(seconds=plan.jitter) for when in fires]
        with _naming(index, plan, "misfire_grace_time"):
            _ = [when + timedelta(seconds=plan.misfire_grace_time) for when in fires]
        return {
            "func": self._fire,
            "trigger": trigger,
            "args": (plan.name,),
            "id": plan.name,
            "name": f"plan {plan.name}",
            "replace_existing": True,
            "coalesce": plan.coalesce,
            "misfire_grace_time": max(1, round(plan.misfire_grace_time)),
            "max_instances": 1,
            "next_run_time": first,
        }

    def scheduled(self) -> int:
        """How many plans have a next fire time (0: the daemon would never run anything)."""
        return sum(when is not None for when in self.next_run_times().values())

    def next_run_times(self) -> dict[str, float | None]:
        """Plan → Unix time it is next due (None: no further run)."""
        times: dict[str, float | None] = {}
        for name in self._plans:
            job = self._sched.get_job(name)
            when = getattr(job, "next_run_time", None)
            times[name] = None if when is None else when.timestamp()
        return times

    def _refresh(self, name: str) -> None:
        when = self.next_run_times().get(name)
        if when is not None:
            self._metrics.set_plan_next_run(name, when)

    def _on_event(self, event: JobEvent) -> None:
        name = event.job_id
        if event.code == EVENT_JOB_MISSED:
            log.warning("scheduled run missed", extra={"plan": name})
            self._metrics.count_missed_run(name)
        elif event.code == EVENT_JOB_MAX_INSTANCES:
            log.warning("plan due while its previous run goes on: skipped", extra={"plan": name})
            self._metrics.count_skipped_run(name)
        elif event.code == EVENT_JOB_ERROR:
            log.error("scheduled run failed: %s", type(getattr(event, "exception", None)).__name__,
                      extra={"plan": name})  # fmt: skip
        if name in self._plans:
            self._refresh(name)

    async def _fire(self, name: str) -> None:
        """The job body: run the plan unless another plan holds the lock."""
        plan = self._plans.get(name)
        if plan is None or self._closing:
            return
        if self._lock.locked():
            log.warning("plan due while plan %s runs: skipped", self.running, extra={"plan": name})
            self._metrics.count_skipped_run(name)
            return
        async with self._lock:
            self.running = name
            self._task = asyncio.ensure_future(self._runner(plan))
            status = "error"
            try:
                # Shielded: scheduler shutdown cancels job futures; the run is drained by `drain`.
                status = await asyncio.shield(self._task)
            except asyncio.CancelledError:
                status = "aborted"
                raise
            finally:
                self._metrics.count_plan_run(name, status, at=self._clock())
                self.running, self._task = None, None

    def run_now(self, name: str) -> None:
        """Make a plan due now (as if its trigger fired): the same lock and counting apply."""
        self._sched.modify_job(name, next_run_time=datetime.now(UTC))
        self._sched.wakeup()

    async def drain(self, timeout: float) -> bool:
        """Wait up to `timeout` for the run in progress; cancel it after that. True if it ended
        by itself (the caller has already told it to stop)."""
        task = self._task
        if task is None:
            return True
        done, _ = await asyncio.wait({task}, timeout=timeout)
        if done:
            return True
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await task
        return False

    def pause(self) -> None:
        """Stop firing (shutdown begins); the run in progress is left to `drain`."""
        self._closing = True  # a job already submitted but not yet started stays idle
        if self._sched.running:
            self._sched.pause()

    def shutdown(self) -> None:
        if self._sched.running:
            self._sched.shutdown(wait=False)
