"""Calibration and overhead: the same load direct to the mock, then through the gateway.

The seed's method subtracts the calibration's percentiles from the through-gateway ones; ours
subtracts each request's own mock service time from its client latency. Both are reported; the
SLO gates on ours, which is a true distribution of what the gateway added.
"""

from __future__ import annotations

from dataclasses import dataclass

from soak.alerting import RuleWriter
from soak.config.fields import Section
from soak.config.schema import SLO_STATS
from soak.metric_catalogue import OVERHEAD, Threshold
from soak.phases.base import PhaseContext, measure, rate_shape, set_mock_latency, warm_up
from soak.phases.spec import PhaseSpec
from soak.stats import percentile_diff_summary
from soak.summary import PhaseReport, Status
from soak.verdicts import at_least, latency_checks, settle


@dataclass(frozen=True, slots=True)
class CalibrationPhase:
    """Load straight to the mock: the baseline the seed subtracts."""

    rate: float
    duration: float
    latency: float
    """Mock latency for this phase (seconds)."""


@dataclass(frozen=True, slots=True)
class OverheadPhase:
    """The same load through the gateway: what it adds."""

    rate: float
    duration: float
    latency: float
    warmup: float = 0.0
    """Seconds of the same load through the gateway before measuring, not recorded (a gateway's
    first requests after a start pay for lazy imports, pools and caches)."""


@dataclass(frozen=True, slots=True)
class OverheadSlo:
    """Upper bounds (seconds) on the gateway's added latency, per statistic."""

    mean: float
    p50: float
    p90: float
    p95: float
    p99: float

    def get(self, stat: str) -> float:
        return float(getattr(self, stat))


def parse_calibration(s: Section) -> CalibrationPhase:
    s.only("rate", "duration", "latency")
    return CalibrationPhase(**rate_shape(s))


def parse_overhead(s: Section) -> OverheadPhase:
    s.only("rate", "duration", "latency", "warmup")
    return OverheadPhase(**rate_shape(s), warmup=s.duration("warmup", 0.0))


def parse_overhead_slo(s: Section) -> OverheadSlo:
    s.only(*SLO_STATS)
    return OverheadSlo(**{stat: s.duration(stat, positive=True) for stat in SLO_STATS})


def overhead_thresholds(slo: OverheadSlo) -> list[Threshold]:
    """Every statistic's bound, counted in the per-request overhead histogram."""
    return [Threshold(OVERHEAD.name, f"slo.overhead.{stat}", slo.get(stat)) for stat in SLO_STATS]


def overhead_alerts(
    r: RuleWriter, slo: OverheadSlo, *, phase: str, window: str, **_: object
) -> None:
    """One alert per statistic of the per-request overhead, counted exactly in its histogram."""
    for stat in SLO_STATS:
        r.latency("SoakGatewayOverheadHigh", OVERHEAD.name, phase, window, stat, slo.get(stat),
                  "warning", "gateway overhead")  # fmt: skip


async def run_calibration(ctx: PhaseContext) -> PhaseReport:
    """Load straight to the mock: the tester's and loopback's own share, the seed's baseline."""
    phase = ctx.config.phases.calibration
    await set_mock_latency(ctx, phase.latency)
    _, report = await measure(
        ctx,
        name="calibration",
        kind="calibration",
        target=ctx.direct,
        rate=phase.rate,
        duration=phase.duration,
        timeout=ctx.config.gateway.timeout,
        params={"latency": phase.latency},
    )
    report.status = Status.BASELINE
    if report.latency is not None:
        ctx.baselines["calibration"] = report.latency
    return report


async def run_overhead(ctx: PhaseContext) -> PhaseReport:
    """The calibration's load through the gateway; gate per-request overhead on the SLO."""
    phase = ctx.config.phases.overhead
    slo = ctx.config.slo.overhead
    await set_mock_latency(ctx, phase.latency)
    if phase.warmup > 0:
        await warm_up(ctx, ctx.gateway, rate=phase.rate, duration=phase.warmup)
    _, report = await measure(
        ctx,
        name="overhead",
        kind="overhead",
        target=ctx.gateway,
        rate=phase.rate,
        duration=phase.duration,
        timeout=ctx.config.gateway.timeout,
        params={"latency": phase.latency, "warmup": phase.warmup},
    )
    if phase.warmup > 0:
        report.notes.append(f"{phase.warmup:g}s of the same load warmed the gateway up first")
    direct = ctx.baselines.get("calibration")
    if report.latency is not None and direct is not None:
        report.distributions["overhead_percentile_diff"] = percentile_diff_summary(
            report.latency, direct
        )
        report.distributions["calibration_latency"] = direct
    elif direct is None:
        report.notes.append("no calibration baseline: the seed's percentile-diff is not shown")
    per_request = report.distributions.get("overhead_per_request")
    if per_request is None and report.completed:
        report.notes.append(
            "no mock service times came back: the gateway removed the mock's marker, "
            "or it does not route to the soak mock"
        )
    thresholds = {stat: slo.get(stat) for stat in ("mean", "p50", "p90", "p95", "p99")}
    report.checks.extend(latency_checks("overhead", per_request, thresholds))
    report.checks.append(at_least("success ratio", report.success_ratio, _MIN_SUCCESS))
    return settle(report)


_MIN_SUCCESS = 0.99
"""Overhead measured on a few survivors would flatter the gateway: most requests must succeed."""


PHASES = (
    PhaseSpec(
        name="calibration",
        order=10,
        run=run_calibration,
        settings=parse_calibration,
        in_error_budget=False,  # straight to the mock: not the gateway's errors
    ),
    PhaseSpec(
        name="overhead",
        reference_interval=900,  # every 15 min in the committed rule files
        order=20,
        run=run_overhead,
        settings=parse_overhead,
        slo=parse_overhead_slo,
        thresholds=overhead_thresholds,
        alerts=overhead_alerts,
    ),
)
