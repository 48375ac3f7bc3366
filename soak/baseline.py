"""A run compared with a baseline run: per phase and statistic, did per-request overhead change?

`compare_runs` matches the phases of two `RunReport`s by name, bootstraps the difference of
each statistic from the compact histograms both reports hold (soak.compare), and judges it
against `slo.regression`: *regressed* when the whole confidence interval lies
above the statistic's tolerance, *improved* when it lies below minus the tolerance, otherwise
*no significant change*. The run fails only on a statistic in `fail_on` of a phase in `phases`.
What cannot be compared (a phase missing from one report, a report written before histograms,
different phase settings) is said in notes, never silently skipped; a phase whose load
generator was not trusted in either run is *inconclusive*: shown, not judged, never failing.

A phase run several times (`soak once --repeat N`: `overhead`, `overhead#2`, ...) offers each
side N runs. Per statistic, each side is represented by its run with the least value of it:
on a shared machine other work (a neighbour, the hypervisor taking the CPU) only ever adds
latency, and it came in bursts that shifted whole 10-second runs by 1–3.5 ms while each run's
own interval stayed a few tenths wide (docs/BENCHMARKS.md). A burst then slows some runs of a
side; a real regression slows all of them. Runs whose load generator was not trusted, then runs
during which the hypervisor took more than `max_steal` of the machine's CPU (every wrong verdict
of the bench fell in such runs), are left out while a run of their side stayed clear; a side with
none is *inconclusive*: shown, not judged.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

from soak.compare import IMPROVED, REGRESSED, STATS, UNCHANGED, Histogram, diff_interval, verdict
from soak.summary import PhaseReport, RunReport, split_repeat

DISTRIBUTION = "overhead_per_request"
NOT_COMPARED = "not compared"
INCONCLUSIVE = "inconclusive"
"""A statistic of a phase whose load generator was not trusted, or whose every run of a side
lost CPU to the hypervisor: shown, never judged (those numbers describe the machine, not the
gateway)."""
_SETTINGS = ("rate", "duration", "latency", "requests", "concurrency")


class RegressionRules(Protocol):
    """What the comparison reads of `slo.regression` (soak.config.regression.RegressionSlo)."""

    @property
    def phases(self) -> tuple[str, ...]: ...
    @property
    def confidence(self) -> float: ...
    @property
    def tolerance(self) -> Mapping[str, float]: ...
    @property
    def fail_on(self) -> tuple[str, ...]: ...
    @property
    def resamples(self) -> int: ...
    @property
    def seed(self) -> int: ...
    @property
    def max_steal(self) -> float: ...


@dataclass(frozen=True, slots=True)
class StatComparison:
    """One statistic of one phase: baseline, current, current − baseline and its interval."""

    stat: str
    baseline: float
    current: float
    diff: float
    low: float
    high: float
    tolerance: float
    verdict: str
    gated: bool
    """A regression of this statistic fails the run."""
    baseline_run: int = 1
    current_run: int = 1
    """Which run of each side was judged (1 of 1 unless the phase was repeated): the one with
    the least value of this statistic."""

    @property
    def relative(self) -> float | None:
        """The change as a share of the baseline (0.25: 25 % slower); None from a zero."""
        return self.diff / self.baseline if self.baseline > 0 else None

    @property
    def failed(self) -> bool:
        return self.gated and self.verdict == REGRESSED


@dataclass(slots=True)
class PhaseComparison:
    """One phase of both runs."""

    phase: str
    baseline_count: int = 0
    current_count: int = 0
    """Requests in the runs each side judged from."""
    gated: bool = False
    baseline_runs: int = 1
    current_runs: int = 1
    """Runs of the phase each side offered (`soak once --repeat`), untrusted ones included."""
    stats: list[StatComparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return _worst({s.verdict for s in self.stats}) if self.stats else NOT_COMPARED

    @property
    def failed(self) -> bool:
        return any(s.failed for s in self.stats)


@dataclass(slots=True)
class Comparison:
    """A run against its baseline: what `soak once --baseline` and `soak compare` report."""

    baseline_run_id: str
    baseline_source: str
    """The baseline report's path as given."""
    baseline_target: str
    baseline_started_at: float
    confidence: float
    resamples: int
    fail_on: list[str]
    distribution: str = DISTRIBUTION
    phases: list[PhaseComparison] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        """A gated statistic of a gated phase regressed beyond its tolerance."""
        return any(p.failed for p in self.phases)

    @property
    def verdict(self) -> str:
        """The worst verdict of the gated phases (of every phase when none is gated)."""
        judged = [p for p in self.phases if p.stats]
        gated = [p for p in judged if p.gated] or judged
        return _worst({p.verdict for p in gated}) if gated else NOT_COMPARED

    def to_dict(self) -> dict[str, Any]:
        """Plain data with the derived verdicts, for report.json."""
        data = asdict(self)
        data["failed"], data["verdict"] = self.failed, self.verdict
        for phase, raw in zip(self.phases, data["phases"], strict=True):
            raw["verdict"], raw["failed"] = phase.verdict, phase.failed
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Comparison:
        """Read `to_dict` back (derived keys are recomputed, not trusted)."""
        raw = {k: v for k, v in data.items() if k not in ("failed", "verdict")}
        phases = []
        for p in raw.pop("phases", []):
            p = {k: v for k, v in p.items() if k not in ("failed", "verdict")}
            p["stats"] = [StatComparison(**s) for s in p.get("stats", [])]
            phases.append(PhaseComparison(**p))
        return cls(**raw, phases=phases)


def _worst(verdicts: set[str]) -> str:
    """Regressed, else inconclusive (nothing can be said), else improved, else unchanged."""
    for word in (REGRESSED, INCONCLUSIVE, IMPROVED):
        if word in verdicts:
            return word
    return UNCHANGED


def _untrusted(*phases: PhaseReport) -> bool:
    return any(p.generator is not None and not p.generator.trusted for p in phases)


def _grouped(run: RunReport) -> dict[str, list[PhaseReport]]:
    """Each phase's runs by name, in run order: `overhead`, `overhead#2`, ... (a repeated phase,
    or a name that occurs twice) are the runs of `overhead`."""
    groups: dict[str, list[PhaseReport]] = {}
    for p in run.phases:
        groups.setdefault(split_repeat(p.name)[0], []).append(p)
    return groups


def _histogram(phase: PhaseReport) -> Histogram | None:
    data = phase.histograms.get(DISTRIBUTION)
    return None if data is None else Histogram.from_json(data)


def _setting_notes(base: PhaseReport, cur: PhaseReport) -> list[str]:
    """Settings that differ between the two runs of a phase: the comparison may not be fair."""
    notes = []
    if abs(base.target_rate - cur.target_rate) > 1e-9:
        notes.append(f"target rate differs: {base.target_rate:g} vs {cur.target_rate:g} req/s")
    for key in _SETTINGS:
        a, b = base.params.get(key), cur.params.get(key)
        if a is not None and b is not None and a != b:
            notes.append(f"{key} differs: {a} vs {b}")
    return notes


def _stolen(p: PhaseReport, limit: float) -> float | None:
    """The host steal of a run when above `limit`, else None."""
    steal = p.generator.host_steal if p.generator is not None else None
    return steal if steal is not None and steal > limit else None


def _runs(
    label: str, reports: list[PhaseReport], limit: float, notes: list[str]
) -> tuple[list[tuple[int, Histogram]], str | None]:
    """(run number, histogram) of a side's runs with one and, when every run left is disturbed,
    why the side cannot be judged. Runs whose load generator was not trusted, then runs with
    host steal above `limit`, are left out while a run without remains (said in `notes`).
    ValueError from a malformed histogram."""
    found = [(i, h, p) for i, p in enumerate(reports, 1) if (h := _histogram(p)) is not None]
    for why, bad in (("its load generator was not trusted", lambda p: _untrusted(p)),
                     (f"the hypervisor took more than {limit * 100:g}% of the machine's CPU",
                      lambda p: _stolen(p, limit) is not None)):  # fmt: skip
        kept = [(i, h, p) for i, h, p in found if not bad(p)]
        if kept and len(kept) < len(found):
            left = ", ".join(str(i) for i, _h, p in found if bad(p))
            notes.append(f"{label} run {left} of {len(reports)} left out: {why}")
            found = kept
    runs = [(i, h) for i, h, _p in found]
    stolen = [s for _i, _h, p in found if (s := _stolen(p, limit)) is not None]
    if found and _untrusted(*(p for _i, _h, p in found)):
        return runs, (f"inconclusive: the {label} run's load generator was not trusted"
                      " (its machine was busy: see that report); shown, not judged")  # fmt: skip
    if found and len(stolen) == len(found):
        return runs, (f"inconclusive: the hypervisor took {min(stolen):.1%} or more of this"
                      f" machine's CPU during every {label} run (max_steal {limit * 100:g}%):"
                      " on a shared machine that shifts whole runs by milliseconds; shown, not"
                      " judged")  # fmt: skip
    return runs, None


def _least(runs: list[tuple[int, Histogram]], stat: str) -> tuple[int, Histogram]:
    """The run with the least value of `stat` (the first of equals)."""
    return min(runs, key=lambda run: run[1].stat(stat))


def compare_phase(
    key: str, base: list[PhaseReport], cur: list[PhaseReport], rules: RegressionRules
) -> PhaseComparison:
    """Every statistic of phase `key`, from each side's runs of it, judged by `rules`."""
    gated = key in rules.phases
    out = PhaseComparison(phase=key, gated=gated, notes=_setting_notes(base[0], cur[0]),
                          baseline_runs=len(base), current_runs=len(cur))  # fmt: skip
    if len(base) != len(cur):
        out.notes.append(f"runs differ: {len(base)} in the baseline, {len(cur)} in this run; the"
                         " least-disturbed of more runs is judged against fewer (run both with"
                         " the same --repeat)")  # fmt: skip
    try:
        a_runs, a_unjudged = _runs("baseline", base, rules.max_steal, out.notes)
        b_runs, b_unjudged = _runs("current", cur, rules.max_steal, out.notes)
    except ValueError as exc:
        out.notes.append(f"not compared: {exc}")
        return out
    if not a_runs or not b_runs:
        which = "baseline" if not a_runs else "current"
        out.notes.append(f"not compared: no per-request overhead histogram in the {which} run")
        return out
    out.baseline_count = sum(h.total for _i, h in a_runs)
    out.current_count = sum(h.total for _i, h in b_runs)
    unjudged = [why for why in (a_unjudged, b_unjudged) if why is not None]
    out.notes.extend(unjudged)
    for stat in STATS:
        (ia, a), (ib, b) = _least(a_runs, stat), _least(b_runs, stat)
        rng = random.Random(f"{rules.seed}:{key}:{stat}")
        iv = diff_interval(a, b, stat, confidence=rules.confidence, resamples=rules.resamples,
                           rng=rng)  # fmt: skip
        tolerance = rules.tolerance[stat]
        out.stats.append(
            StatComparison(
                stat=stat, baseline=iv.baseline, current=iv.current, diff=iv.diff, low=iv.low,
                high=iv.high, tolerance=tolerance,
                verdict=INCONCLUSIVE if unjudged else verdict(iv, tolerance),
                gated=gated and stat in rules.fail_on, baseline_run=ia, current_run=ib,
            )
        )  # fmt: skip
    return out


def compare_runs(
    baseline: RunReport, current: RunReport, rules: RegressionRules, *, source: str = ""
) -> Comparison:
    """`current` against `baseline`: every phase both hold, the gated ones first in notes."""
    result = Comparison(
        baseline_run_id=baseline.run_id,
        baseline_source=source,
        baseline_target=baseline.target,
        baseline_started_at=baseline.started_at,
        confidence=rules.confidence,
        resamples=rules.resamples,
        fail_on=list(rules.fail_on),
    )
    if (baseline.target, baseline.kind) != (current.target, current.kind):
        result.notes.append(
            f"different gateways: baseline {baseline.target} ({baseline.kind}),"
            f" this run {current.target} ({current.kind})"
        )
    if baseline.profile != current.profile:
        result.notes.append(f"different profiles: {baseline.profile} vs {current.profile}")
    base, cur = _grouped(baseline), _grouped(current)
    for key, runs in cur.items():
        if key in base:
            result.phases.append(compare_phase(key, base[key], runs, rules))
    for name in rules.phases:
        if name in cur and name not in base:
            result.notes.append(f"{name}: not in the baseline report: not compared")
        elif name in base and name not in cur:
            result.notes.append(f"{name}: not run this time: not compared")
    for p in result.phases:
        if p.gated and not p.stats:
            result.notes.append(f"{p.phase}: gated but not compared ({'; '.join(p.notes)})")
    return result
