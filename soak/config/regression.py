"""`slo.regression`: when a run is slower than its baseline (`soak once --baseline`,
`soak compare`).

A run-level objective, not a phase's: per-request overhead of each phase is compared with the
same phase of a baseline report, statistic by statistic, with a bootstrap confidence interval
(soak.compare). A statistic *regressed* when the whole interval lies above its tolerance; the
run fails when a statistic named in `fail_on` regressed in a phase named in `phases`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from soak.config.fields import Section

STATS = ("mean", "p50", "p90", "p95", "p99")
MAX_RESAMPLES = 1_000_000
"""Each draw costs microseconds: a million per statistic is already seconds of work."""
MAX_RUNS = 20
"""Each run is a whole phase: 20 of them already make a CI job minutes longer."""
KEYS = ("phases", "confidence", "tolerance", "fail_on", "resamples", "seed", "runs", "max_steal")


def _tolerances() -> Mapping[str, float]:
    return MappingProxyType({"mean": 0.001, "p50": 0.001, "p90": 0.002, "p95": 0.005,
                             "p99": 0.02})  # fmt: skip


@dataclass(frozen=True, slots=True)
class RegressionSlo:
    """How a run is judged against a baseline run."""

    phases: tuple[str, ...] = ("overhead",)
    """Phases whose regression fails the run (every phase both reports hold is shown)."""
    confidence: float = 0.95
    """Two-sided level of each difference's interval (0.95: the 2.5th–97.5th percentiles)."""
    tolerance: Mapping[str, float] = field(default_factory=_tolerances)
    """Statistic → the change (seconds) below which it is no significant change."""
    fail_on: tuple[str, ...] = ("p50",)
    """Statistics whose regression fails the run; empty: compare and report only."""
    resamples: int = 10_000
    """Bootstrap draws per statistic and run."""
    seed: int = 1
    """Seed of the bootstrap's RNG: the same two reports always give the same intervals."""
    runs: int = 1
    """Times `soak once` runs each phase in `phases` (`--repeat` overrides). Of several runs a
    comparison judges each side's least-disturbed one per statistic: on a shared machine other
    work only ever adds latency, so a neighbour's burst slows some runs and a real regression
    slows them all."""
    max_steal: float = 0.02
    """A run during which the hypervisor took more than this share of the machine's CPU time
    (Linux steal) is left out while a run of its side stayed below it; a side with none is
    *inconclusive*. 1 judges every run."""


DEFAULT_REGRESSION = RegressionSlo()


def parse_regression(s: Section, phase_names: Sequence[str]) -> RegressionSlo:
    """`slo.regression` (an empty section: the defaults); phases must be registered ones."""
    s.only(*KEYS)
    d = DEFAULT_REGRESSION
    phases = _names(s, "phases", phase_names, d.phases)
    confidence = s.number("confidence", d.confidence, positive=True)
    if not 0.5 <= confidence < 1.0:
        s.fail("confidence", f"must be at least 0.5 and below 1, got {confidence:g}", "e.g. 0.95")
    tolerance = dict(d.tolerance)
    table = s.section("tolerance", optional=True)
    if table is not None:
        table.only(*STATS)
        for stat in STATS:
            if table.has(stat):
                tolerance[stat] = table.duration(stat)
    fail_on = _names(s, "fail_on", STATS, d.fail_on)
    return RegressionSlo(
        phases=phases,
        confidence=confidence,
        tolerance=MappingProxyType(tolerance),
        fail_on=fail_on,
        resamples=_resamples(s, d.resamples),
        seed=s.integer("seed", d.seed, minimum=0),
        runs=s.integer("runs", d.runs, minimum=1, maximum=MAX_RUNS),
        max_steal=s.number("max_steal", d.max_steal, at_most=1.0, hint="share of CPU time"),
    )


def _resamples(s: Section, default: int) -> int:
    value = s.integer("resamples", default, minimum=100)
    if value > MAX_RESAMPLES:
        s.fail("resamples", f"must be at most {MAX_RESAMPLES:,}, got {value:,}")
    return value


def _names(
    s: Section, key: str, allowed: Sequence[str], default: tuple[str, ...]
) -> tuple[str, ...]:
    """A list of distinct names out of `allowed` (an empty list is allowed)."""
    value = s.data.get(key)
    if value is None:
        return default
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        s.wrong_type(key, "a list of names", value)
    for name in value:
        if name not in allowed:
            s.fail(key, f"unknown name {name!r}", f"use {', '.join(allowed)}")
    if len(set(value)) != len(value):
        s.fail(key, "lists a name twice")
    return tuple(value)
