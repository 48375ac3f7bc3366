"""What a phase and a run came to: the data every report and the exporter render.

Phases turn `Result` records into these summaries; reports and metrics only read them. All
durations are seconds, ratios are 0..1, rates are requests per second.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from enum import StrEnum
from typing import Any


class Status(StrEnum):
    """A phase's verdict. `baseline` phases (calibration) are measured, not judged."""

    PASSED = "passed"
    FAILED = "failed"
    ERROR = "error"
    BASELINE = "baseline"
    SKIPPED = "skipped"


@dataclass(frozen=True, slots=True)
class LatencySummary:
    """Exact-percentile summary of one distribution (seconds)."""

    count: int
    min: float
    mean: float
    p50: float
    p90: float
    p95: float
    p99: float
    max: float

    PERCENTILES = ("mean", "p50", "p90", "p95", "p99")

    def get(self, stat: str) -> float:
        return float(getattr(self, stat))


@dataclass(frozen=True, slots=True)
class Check:
    """One verdict line: `value op threshold`, e.g. overhead p99 0.004 < 0.100."""

    name: str
    value: float | None
    op: str
    threshold: float
    unit: str
    passed: bool
    tier: str | None = None
    """target / acceptable / warning, where the seeds define tiers."""


@dataclass(frozen=True, slots=True)
class ProcessSummary:
    """A watched process (the gateway) over a phase: the seed's CPU/RSS table."""

    samples: int
    cpu_avg: float
    cpu_peak: float
    rss_avg: float
    rss_peak: float
    rss_initial: float = 0.0
    rss_final: float = 0.0
    fds_peak: int = 0
    threads_peak: int = 0


@dataclass(frozen=True, slots=True)
class GeneratorHealth:
    """Could the tester keep up? `trusted` is False when its own limits skewed the numbers."""

    send_lag_p99: float
    loop_lag_max: float
    cpu_ratio: float
    drops: int
    trusted: bool
    reasons: tuple[str, ...] = ()


@dataclass(slots=True)
class PhaseReport:
    """One phase of a run."""

    name: str
    kind: str
    status: Status
    started_at: float = 0.0
    duration_s: float = 0.0
    target_rate: float = 0.0
    throughput: float = 0.0
    sent: int = 0
    completed: int = 0
    drops: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    success_ratio: float = 0.0
    latency: LatencySummary | None = None
    """Client latency from the intended start."""
    distributions: dict[str, LatencySummary] = field(default_factory=dict)
    """Named extra distributions: ttft, overhead_per_request, overhead_percentile_diff, ..."""
    checks: list[Check] = field(default_factory=list)
    process: ProcessSummary | None = None
    generator: GeneratorHealth | None = None
    params: dict[str, Any] = field(default_factory=dict)
    """The phase's settings as run (rate, duration, mock latency, concurrency)."""
    error: str | None = None
    notes: list[str] = field(default_factory=list)
    details: dict[str, Any] = field(default_factory=dict)
    """Phase-specific results in plain JSON data: breaker timelines (observed and reported),
    failover figures, the memory trend, the readiness verdict and tiers (see docs/reports.md)."""
    histograms: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Compact bucket counts of per-request distributions (`overhead_per_request`), so a later
    run can be compared with this one (`soak.compare.Histogram.to_json`)."""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class RunReport:
    """A whole `soak once` run."""

    run_id: str
    started_at: float
    finished_at: float
    target: str
    kind: str
    profile: str
    phases: list[PhaseReport] = field(default_factory=list)
    aborted: bool = False
    error: str | None = None
    comparison: Any = None
    """A `soak.baseline.Comparison` with a baseline run (`soak once --baseline`), or None."""
    notes: list[str] = field(default_factory=list)
    """What happened around the run (the daemon's gateway crashed and was restarted since)."""

    @property
    def passed(self) -> bool:
        if self.aborted or self.error:
            return False
        if self.comparison is not None and self.comparison.failed:
            return False
        settled = (Status.PASSED, Status.BASELINE, Status.SKIPPED)
        return all(p.status in settled for p in self.phases)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["passed"] = self.passed
        return data
