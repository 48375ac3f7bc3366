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

`CapacitySearch` (which rate next) and `judge` (did a step hold) are pure, tested without load.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

from soak.config.fields import MAX_RATE as RATE_LIMIT
from soak.config.fields import RATE_HINT, Section
from soak.metric_catalogue import OVERHEAD, Threshold
from soak.phases.base import PhaseContext, measure, set_mock_latency
from soak.phases.spec import PhaseSpec, report_section
from soak.summary import PhaseDetails, PhaseReport, Status
from soak.verdicts import at_least, settle

RUNAWAY_FLOOR = 0.010
"""Seconds the p50 overhead must also grow by to count as runaway: 0.3 → 1 ms is noise."""
MIN_BISECT_RATIO = 1.05
"""No bisection between rates closer than 5%: the knee is known well enough."""
GENERATOR, SLO, RUNAWAY = "generator", "slo", "runaway"
MAX_RATE, BUDGET, STOPPED = "max_rate", "budget", "stopped"
STOP_WORDS = {
    GENERATOR: "the load generator saturated (its own limits, not the gateway's)",
    SLO: "the gateway broke the SLO",
    RUNAWAY: "the gateway's latency ran away",
    MAX_RATE: "the configured max_rate was reached, still holding",
    BUDGET: "the time budget ran out",
    STOPPED: "the run was stopped",
}


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
class Step:
    """One rate tried: what the gateway carried and whether it held."""

    rate: float
    achieved: float
    """Requests per second actually sent."""
    throughput: float
    """Successful requests per second."""
    success: float
    overhead_p50: float | None
    overhead_p99: float | None
    latency_p50: float | None
    latency_p99: float | None
    drops: int
    trusted: bool
    loop_lag_max: float | None = None
    """The tester's worst event-loop lag in the step: the most its own delays add to a
    measured overhead (overhead excludes send lag: it is timed from the actual send)."""
    held: bool = False
    stop: str | None = None
    """Why it did not hold: generator, slo or runaway (None: held)."""
    reasons: list[str] = field(default_factory=list)


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


def step_of(rate: float, report: PhaseReport, achieved: float) -> Step:
    """The figures of one step's `PhaseReport` (not judged yet)."""
    over = report.distributions.get("overhead_per_request")
    lat = report.latency
    gen = report.generator
    return Step(
        rate=rate,
        achieved=achieved,
        throughput=report.throughput,
        success=report.success_ratio,
        overhead_p50=over.p50 if over else None,
        overhead_p99=over.p99 if over else None,
        latency_p50=lat.p50 if lat else None,
        latency_p99=lat.p99 if lat else None,
        drops=report.drops,
        trusted=gen.trusted if gen is not None else True,
        loop_lag_max=gen.loop_lag_max if gen is not None else None,
        reasons=[f"generator: {r}" for r in gen.reasons] if gen is not None else [],
    )


def judge(step: Step, previous: Step | None, slo: CapacitySlo) -> Step:
    """Set `held`, `stop` and `reasons`; the generator outranks the SLO, the SLO runaway."""
    causes: list[str] = []
    if not step.trusted or step.drops:
        causes.append(GENERATOR)
        if step.drops:
            step.reasons.append(f"{step.drops} requests dropped at the in-flight cap")
    else:
        step.reasons.clear()
    if step.success < slo.success_ratio:
        causes.append(SLO)
        step.reasons.append(f"success {step.success:.4f} < {slo.success_ratio:g}")
    if step.overhead_p99 is None or step.overhead_p99 >= slo.p99:
        causes.append(SLO)
        value = "none" if step.overhead_p99 is None else f"{step.overhead_p99 * 1e3:.1f} ms"
        step.reasons.append(f"overhead p99 {value} >= {slo.p99 * 1e3:g} ms")
    p50, before = step.overhead_p50, previous.overhead_p50 if previous else None
    if p50 is not None and before is not None and _ran_away(p50, before, slo.runaway):
        causes.append(RUNAWAY)
        step.reasons.append(
            f"overhead p50 {p50 * 1e3:.1f} ms > {slo.runaway:g} x {before * 1e3:.1f} ms"
        )
    if causes and causes[0] == GENERATOR and _gateway_beyond_tester(step):
        causes = [c for c in causes if c != GENERATOR] + [GENERATOR]
    step.held = not causes
    step.stop = causes[0] if causes else None
    return step


def _gateway_beyond_tester(step: Step) -> bool:
    """The gateway broke by more than the tester's own delays can explain: its p50 overhead
    exceeds the tester's worst loop lag (then the SLO or runaway, not the tester, stopped it)."""
    p50, lag = step.overhead_p50, step.loop_lag_max
    return p50 is not None and lag is not None and p50 > lag


def _ran_away(p50: float, before: float, factor: float) -> bool:
    return p50 > factor * before and p50 - before > RUNAWAY_FLOOR


class CapacitySearch:
    """Which rate to try next, from the steps so far: climb by `factor`, then bisect."""

    def __init__(self, phase: CapacityPhase) -> None:
        self.phase = phase
        self.steps: list[Step] = []
        self.good: Step | None = None
        """The highest-rate step that held (the knee so far)."""
        self.bad: Step | None = None
        """The lowest-rate step that did not."""
        self.stopped_by: str | None = None
        self.bisects = 0
        self._again: float | None = None
        self.stopper: Step | None = None
        """The step that ended the climb."""

    def record(self, step: Step) -> None:
        self.steps.append(step)
        if step.held:
            if self.good is None or step.rate > self.good.rate:
                self.good = step
        else:
            if self.stopped_by is None:
                self.stopped_by, self.stopper = step.stop, step
            if self.bad is None or step.rate < self.bad.rate:
                self.bad = step

    def retry(self, rate: float) -> None:
        """Have `next_rate` return `rate` once more (a step the tester could not trust)."""
        self._again = rate

    def next_rate(self) -> float | None:
        """The next rate to try, or None when the search is over (`stopped_by` says why)."""
        phase = self.phase
        if self._again is not None:
            rate, self._again = self._again, None
            return rate
        if not self.steps:
            return phase.start
        if self.bad is None:
            last = self.steps[-1].rate
            if last >= phase.max_rate:
                self.stopped_by = MAX_RATE
                return None
            return min(last * phase.factor, phase.max_rate)
        if self.good is None or self.bisects >= phase.bisect:
            return None
        if self.bad.rate / self.good.rate < MIN_BISECT_RATIO:
            return None
        self.bisects += 1
        return math.sqrt(self.good.rate * self.bad.rate)

    @property
    def knee(self) -> float | None:
        return None if self.good is None else self.good.rate


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


def record_capacity(report: PhaseReport, metrics: Any, target: str) -> None:
    """The knee into `soak_capacity_knee_requests_per_second` (0 when nothing held)."""
    if report.status not in (Status.ERROR, Status.SKIPPED):
        metrics.set_capacity_knee(report.record(CapacityDetails).knee or 0.0, target=target)


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
    markdown=report_section("soak.reports.capacity_md", "capacity_section"),
    details=CapacityDetails,
)
