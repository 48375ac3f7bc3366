"""The capacity search, pure: which rate to try next, and whether a step held.

`CapacitySearch` climbs from `start` by `factor` up to `max_rate`, then bisects between the
highest rate that held and the lowest that did not; `judge` says whether one `Step` held and,
if not, what stopped it (the generator, the SLO, a runaway p50). No I/O and no clock: the
capacity phase (soak.phases.capacity) runs the loads, these decide, and tests drive them with
made-up steps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Protocol

from soak.summary import PhaseReport

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


class SearchBounds(Protocol):
    """The part of `phases.capacity` the search reads."""

    @property
    def start(self) -> float: ...
    @property
    def factor(self) -> float: ...
    @property
    def max_rate(self) -> float: ...
    @property
    def bisect(self) -> int: ...


class HoldRule(Protocol):
    """The part of `slo.capacity` a step must meet."""

    @property
    def success_ratio(self) -> float: ...
    @property
    def p99(self) -> float: ...
    @property
    def runaway(self) -> float: ...


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


def judge(step: Step, previous: Step | None, slo: HoldRule) -> Step:
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

    def __init__(self, phase: SearchBounds) -> None:
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
