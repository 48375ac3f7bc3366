"""Capacity search: raise the arrival rate step by step until something gives, and say what.

Each step is one open-loop load of `step_duration` at a rate `factor` × the previous one,
through the gateway, from `start` up to `max_rate`. A step *holds* when its success share and
its per-request overhead p99 meet `slo.capacity`, its p50 overhead did not run away (more than
`runaway` × the last held step's, and more than `RUNAWAY_FLOOR` above it), and the load
generator kept up (trusted, no drops). The first step that does not hold names what stopped the
search: `generator` (the tester saturated first: the figures above it are the tester's, not the
gateway's), `slo`, or `runaway` (these two outrank `generator` when the gateway's p50 overhead
is beyond the tester's worst loop lag: more than the tester's delays can explain); otherwise
`max_rate`, `budget` or `stopped`. Then `bisect` steps at the geometric mean of the highest held
and the lowest failed rate refine the knee: the highest rate that held. A step the tester could
not trust is run once more before it counts (a neighbour on a shared core is not saturation).
A step is only started when its load plus its timeout fits in what is left of `budget`.

`CapacitySearch` (which rate next) and `judge` (did a step hold) are pure (soak.capacity), tested
without load.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from soak.capacity import (
    BUDGET,
    GENERATOR,
    MAX_RATE,
    STOP_WORDS,
    STOPPED,
    CapacitySearch,
    Step,
    judge,
    step_of,
)
from soak.config.fields import MAX_RATE as RATE_LIMIT
from soak.config.fields import RATE_HINT, Section
from soak.metric_catalogue import OVERHEAD, MetricSpec, Threshold
from soak.phases.base import PhaseContext, measure, set_mock_latency
from soak.phases.spec import PhaseSpec, report_hook
from soak.summary import PhaseDetails, PhaseReport, Status
from soak.verdicts import at_least, settle


@dataclass(frozen=True, slots=True)
class CapacityPhase:
    """Raise the arrival rate from `start` by `factor` per step (each `step_duration` long) up to
    `max_rate`, then bisect `bisect` times between the last rate that held and the first that
    did not; the whole search ends within `budget`."""

    start: float = 10.0
    factor: float = 1.5
    max_rate: float = 2000.0
    step_duration: float = 5.0
    budget: float = 120.0
    latency: float = 0.05
    """Mock latency during the search (short: the gateway, not the mock, sets the pace)."""
    timeout: float = 10.0
    """Per-request client timeout; a step drains for at most this long after its load."""
    bisect: int = 2
    pause: float = 2.0
    """Idle seconds between steps, so a backlog from one step does not spill into the next."""


@dataclass(frozen=True, slots=True)
class CapacitySlo:
    """What a rate must hold to count as carried."""

    success_ratio: float = 0.99
    p99: float = 0.2
    """Upper bound on the per-request overhead's p99 (seconds)."""
    runaway: float = 3.0
    """A step whose p50 overhead exceeds this factor × the previous step's has run away."""
    min_knee: float = 0.0
    """The phase fails when the knee is below this rate (0: measured, not judged)."""


DEFAULT_CAPACITY = CapacityPhase()
DEFAULT_CAPACITY_SLO = CapacitySlo()
PHASE_KEYS = ("start", "factor", "max_rate", "step_duration", "budget", "latency", "timeout",
              "bisect", "pause")  # fmt: skip
SLO_KEYS = ("success_ratio", "p99", "runaway", "min_knee")


def parse_capacity(s: Section) -> CapacityPhase:
    """`phases.capacity`, each missing key at its default."""
    s.only(*PHASE_KEYS)
    d = DEFAULT_CAPACITY
    phase = CapacityPhase(
        start=s.number("start", d.start, positive=True, at_most=RATE_LIMIT, hint=RATE_HINT),
        factor=s.number("factor", d.factor, positive=True),
        max_rate=s.number(
            "max_rate", d.max_rate, positive=True, at_most=RATE_LIMIT, hint=RATE_HINT
        ),
        step_duration=s.duration("step_duration", d.step_duration, positive=True),
        budget=s.duration("budget", d.budget, positive=True),
        latency=s.duration("latency", d.latency),
        timeout=s.duration("timeout", d.timeout, positive=True),
        bisect=s.integer("bisect", d.bisect, minimum=0),
        pause=s.duration("pause", d.pause),
    )
    if phase.factor <= 1.0:
        s.fail("factor", f"must be above 1, got {phase.factor:g}", "e.g. 1.5: +50% per step")
    if phase.max_rate < phase.start:
        s.fail("max_rate", f"must not be below start ({phase.start:g})")
    if phase.budget < phase.step_duration:
        s.fail("budget", f"must allow at least one step ({phase.step_duration:g}s)")
    return phase


def parse_capacity_slo(s: Section) -> CapacitySlo:
    """`slo.capacity`, each missing key at its default."""
    s.only(*SLO_KEYS)
    d = DEFAULT_CAPACITY_SLO
    out = CapacitySlo(
        success_ratio=s.number("success_ratio", d.success_ratio, positive=True, at_most=1.0),
        p99=s.duration("p99", d.p99, positive=True),
        runaway=s.number("runaway", d.runaway, positive=True),
        min_knee=s.number("min_knee", d.min_knee),
    )
    if out.runaway <= 1.0:
        s.fail("runaway", f"must be above 1, got {out.runaway:g}", "e.g. 3: p50 tripled")
    return out


@dataclass(slots=True)
class CapacityDetails(PhaseDetails):
    """The capacity phase's record: the knee, why the search stopped, and every step tried
    (`Step` as plain data, in the order tried)."""

    knee: float | None = None
    stopped_by: str | None = None
    stopped_because: str | None = None
    reasons: list[str] = field(default_factory=list)
    steps: list[dict[str, Any]] = field(default_factory=list)
    bisects: int | None = None
    elapsed: float | None = None
    retried: list[dict[str, Any]] = field(default_factory=list)
    """Steps the tester saturated on, tried once more (their first attempt)."""


async def run_capacity(
    ctx: PhaseContext, *, clock: Callable[[], float] = time.monotonic
) -> PhaseReport:
    """The search through the gateway; one report: the knee, what stopped it, the curve."""
    phase, slo = ctx.config.phases.capacity, ctx.config.slo.capacity
    await set_mock_latency(ctx, phase.latency)
    search = CapacitySearch(phase)
    started, wall = clock(), time.time()
    reports: dict[float, PhaseReport] = {}
    retried: dict[float, Step] = {}
    while (rate := search.next_rate()) is not None:
        if ctx.stop.is_set():
            search.stopped_by = search.stopped_by or STOPPED
            break
        if phase.budget - (clock() - started) < phase.step_duration + phase.timeout:
            search.stopped_by = search.stopped_by or BUDGET
            break
        if search.steps and phase.pause > 0:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(ctx.stop.wait(), phase.pause)
        run, step_report = await measure(
            ctx,
            name="capacity",  # one bounded label for every step (the daemon labels by it)
            kind="capacity",
            target=ctx.gateway,
            rate=rate,
            duration=phase.step_duration,
            timeout=phase.timeout,
            params={"latency": phase.latency},
        )
        step = judge(step_of(rate, step_report, run.achieved_rate), search.good, slo)
        if step.stop == GENERATOR and rate not in retried:
            retried[rate] = step  # once more: a neighbour on a shared core is no saturation
            search.retry(rate)
            continue
        reports[rate] = step_report
        search.record(step)
    return capacity_report(search, reports, slo, started_at=wall, elapsed=clock() - started,
                           retried=list(retried.values()))  # fmt: skip


def capacity_report(
    search: CapacitySearch,
    reports: dict[float, PhaseReport],
    slo: CapacitySlo,
    *,
    started_at: float,
    elapsed: float,
    retried: Sequence[Step] = (),
) -> PhaseReport:
    """The phase's report: the knee step's figures on top, every step in its details."""
    phase = search.phase
    knee = search.knee
    base = reports.get(knee) if knee is not None else None
    report = PhaseReport(name="capacity", kind="capacity", status=Status.PASSED)
    if base is not None:
        note = f"figures at the knee ({knee:.4g} req/s); every step in the curve"
        report = base.without_details(name="capacity", checks=[], notes=[note])
    report.started_at = started_at
    report.target_rate = knee or 0.0  # exported as soak_phase_last_target_requests_per_second
    report.params = {**asdict(phase), "slo": asdict(slo), **_reported(base)}
    stopped_by = search.stopped_by or (STOPPED if not search.steps else MAX_RATE)
    first_bad = search.stopper
    report.details = CapacityDetails(
        knee=knee,
        stopped_by=stopped_by,
        stopped_because=STOP_WORDS.get(stopped_by, stopped_by),
        reasons=list(first_bad.reasons) if first_bad else [],
        steps=[asdict(s) for s in search.steps],
        bisects=search.bisects,
        elapsed=round(elapsed, 3),
        retried=[asdict(s) for s in retried],
    )
    if knee is None:
        report.notes.append(
            "no rate held: even the start rate broke the SLO, ran away or saturated the tester"
        )
    if stopped_by == GENERATOR:
        report.notes.append(
            "the load generator saturated before the gateway: the knee is a lower bound"
        )
    if slo.min_knee > 0:
        report.checks.append(at_least("capacity knee", knee, slo.min_knee, unit="req/s"))
    return settle(report)


def _reported(base: PhaseReport | None) -> dict[str, Any]:
    if base is None or "gateway_reported" not in base.params:
        return {}
    return {"gateway_reported": base.params["gateway_reported"]}


def capacity_thresholds(slo: CapacitySlo) -> list[Threshold]:
    """The p99 a step must hold is a per-request overhead bound."""
    return [Threshold(OVERHEAD.name, "slo.capacity.p99", slo.p99)]


CAPACITY_KNEE = MetricSpec("soak_capacity_knee_requests_per_second", "gauge", ("target",),
    "Highest arrival rate that held the capacity SLO in the last capacity search (0: none did).",
)


def record_capacity(report: PhaseReport, metrics: Any, target: str) -> None:
    """The knee into `soak_capacity_knee_requests_per_second` (0 when nothing held)."""
    if report.status not in (Status.ERROR, Status.SKIPPED):
        metrics.child(CAPACITY_KNEE, target).set(report.record(CapacityDetails).knee or 0.0)


PHASE = PhaseSpec(
    name="capacity",
    order=90,
    run=run_capacity,
    settings=parse_capacity,
    slo=parse_capacity_slo,
    on_demand=True,  # a search of minutes: run when named
    in_error_budget=False,  # it pushes the gateway past what it carries on purpose
    thresholds=capacity_thresholds,
    record=record_capacity,
    markdown=report_hook("soak.reports.capacity_md", "capacity_section"),
    details=CapacityDetails,
    metrics=(CAPACITY_KNEE,),
    figure=report_hook("soak.reports.phase_plots", "capacity_figure"),
)
