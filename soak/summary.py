"""What a phase and a run came to: the data every report and the exporter render.

Phases turn `Result` records into these summaries; reports and metrics only read them. All
durations are seconds, ratios are 0..1, rates are requests per second.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, replace
from enum import StrEnum
from types import UnionType
from typing import Any, Self, TypeVar, Union, get_args, get_origin, get_type_hints


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
    host_steal: float | None = None
    """Share of the machine's CPU time the hypervisor gave to other guests while the phase ran
    (Linux /proc/stat `steal`; None where not told). Not a reason to distrust the generator,
    which cannot see it: a comparison with a baseline leaves such runs out."""
    loop: str | None = None
    """The event loop the load ran on (`asyncio`, `uvloop`; None in older reports)."""


class PhaseDetails:
    """Base of a phase's typed results record (a dataclass declared by the phase's module and
    named in its `PhaseSpec.details`): what its report sections, metrics and the daemon read by
    attribute, so a misspelt key fails in a type check or a test, not as "—" in a report.

    `to_dict` gives the plain JSON under report.json's `details`; `from_dict` reads it back,
    defaulting keys an older report lacks and ignoring keys it does not know."""

    __slots__ = ()

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)  # type: ignore[call-overload]

    def headline(self) -> str | None:
        """A word the phase adds to its key figures (readiness: READY / NOT READY)."""
        return None

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        """Raises ValueError naming a field whose JSON value is not of its declared type (a
        report edited by hand or by another tool), so a reader never meets it later."""
        hints = get_type_hints(cls)
        values = {}
        for f in fields(cls):  # type: ignore[arg-type]
            if f.name in data:
                value = data[f.name]
                if not _json_fits(value, hints[f.name]):
                    raise ValueError(f"details.{f.name}: {type(value).__name__} is not {f.type}")
                values[f.name] = value
        return cls(**values)


def _json_fits(value: Any, hint: Any) -> bool:
    """Does a JSON value fit a field's type such as `dict[str, Any] | str | None`? Only the
    outer type is checked (a list is a list); an int is a float, a bool is not a number."""
    options = get_args(hint) if get_origin(hint) in (Union, UnionType) else (hint,)
    for option in options:
        kind = get_origin(option) or option
        if kind is Any:
            return True
        if isinstance(value, bool) and kind is not bool:
            continue
        if isinstance(value, (int, float) if kind is float else kind):
            return True
    return False


@dataclass(slots=True)
class PlainDetails(PhaseDetails):
    """The details of a report whose phase declares no record type (or is not registered in
    this process), kept as read so a round trip loses nothing."""

    data: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return dict(self.data)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Self:
        return cls(dict(data))


D = TypeVar("D", bound=PhaseDetails)


@dataclass(frozen=True, slots=True)
class NegativeOverhead:
    """Successful requests whose per-request overhead came out negative (clamped to 0 in the
    distributions): how many, and the most negative value (seconds)."""

    count: int
    worst: float


SHARED_DETAILS = (
    "scheduled",
    "negative_overhead",
    "process_series",
    "breakdown",
    "verification",
    "gateway_said",
)
"""`PhaseReport` fields any measured phase may fill; report.json keeps them under `details`
beside the phase's own record (one flat object, as schema v1/v2 have it)."""


def repeat_name(phase: str, number: int) -> str:
    """The report name of repeat `number` of a phase run several times in one run, so that a
    comparison can judge its least-disturbed run: `overhead`, `overhead#2`, ..."""
    return phase if number == 1 else f"{phase}#{number}"


def split_repeat(name: str) -> tuple[str, int]:
    """(phase, repeat) of a report name: `overhead#2` → ("overhead", 2); `stress-1` →
    ("stress-1", 1)."""
    phase, hash_, number = name.rpartition("#")
    if hash_ and phase and number.isascii() and number.isdigit() and int(number) > 0:
        return phase, int(number)
    return name, 1


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
    details: PhaseDetails | None = None
    """The phase's own typed record: breaker timelines (observed and reported), failover
    figures, the memory trend, the readiness verdict and tiers, the capacity curve, ...
    (see docs/reports.md); None before the phase got that far."""
    histograms: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Compact bucket counts of per-request distributions (`overhead_per_request`), so a later
    run can be compared with this one (`soak.compare.Histogram.to_json`)."""
    scheduled: int | None = None
    """Requests the open-loop schedule asked for (fixed-rate phases)."""
    negative_overhead: NegativeOverhead | None = None
    process_series: list[list[float | None]] | None = None
    """The gateway process over the phase, `[t_rel_s, rss_bytes, cpu_percent]` rows."""
    breakdown: dict[str, Any] | None = None
    """Per model and per key tables of the phase (`soak.breakdown`)."""
    verification: dict[str, Any] | None = None
    """The tally of the mock's traces against the answers (`soak.verify.Verification`)."""
    gateway_said: dict[str, Any] | None = None
    """What the gateway's own headers said, against the mock's markers (soak.gateway.said)."""

    def to_dict(self) -> dict[str, Any]:
        """Plain data; `details` holds the shared fields that are set, then the phase's record."""
        data = asdict(replace(self, details=None))
        details = {n: v for n in SHARED_DETAILS if (v := data.pop(n)) is not None}
        data["details"] = {**details, **(self.details.to_dict() if self.details else {})}
        return data

    def record(self, kind: type[D]) -> D:
        """Its details as `kind` (its phase's record type): an empty record when it has none
        (the phase ended before it got that far), read over when it was kept plain."""
        if isinstance(self.details, kind):
            return self.details
        return kind.from_dict(self.details.to_dict() if self.details is not None else {})

    def without_details(self, **changes: Any) -> PhaseReport:
        """A copy with `changes` and neither the phase's record nor any shared detail (a
        summary report made from one of its steps)."""
        return replace(self, details=None, **dict.fromkeys(SHARED_DETAILS), **changes)


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
        data = asdict(replace(self, phases=[]))
        data["phases"] = [p.to_dict() for p in self.phases]
        data["passed"] = self.passed
        return data
