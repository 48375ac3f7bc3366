"""Config of the capacity search (`phases.capacity`, `slo.capacity`): strict parsing.

Split from `soak.config` like the resilience phases. Both sections are optional in a profile:
missing keys take the defaults below, so a profile or file written before the phase existed
stays valid.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from soak.config.fields import Section


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


def capacity_phase(phases: Section) -> CapacityPhase:
    """`phases.capacity`, each missing key at its default."""
    s = phases.section("capacity", optional=True)
    if s is None:
        return DEFAULT_CAPACITY
    s.only(*PHASE_KEYS)
    d = DEFAULT_CAPACITY
    phase = CapacityPhase(
        start=s.number("start", d.start, positive=True),
        factor=s.number("factor", d.factor, positive=True),
        max_rate=s.number("max_rate", d.max_rate, positive=True),
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


def capacity_slo(slo: Section) -> CapacitySlo:
    """`slo.capacity`, each missing key at its default."""
    s = slo.section("capacity", optional=True)
    if s is None:
        return DEFAULT_CAPACITY_SLO
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


def describe_capacity(phase: CapacityPhase, slo: CapacitySlo) -> tuple[dict[str, Any], dict]:
    """JSON-safe (phases.capacity, slo.capacity) entries, durations in seconds."""
    return asdict(phase), asdict(slo)
