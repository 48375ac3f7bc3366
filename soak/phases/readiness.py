"""Production readiness: the seed's combined run at a fixed rate, READY / NOT READY.

Every criterion (success, throughput against the target rate, p95, p99) must pass for READY;
each carries the seed's target / acceptable / warning tier, and p50 is graded too (no gate).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from soak.alerting import judged_alerts
from soak.config.fields import Section
from soak.metric_catalogue import REQUEST_DURATION, Threshold
from soak.phases.base import PhaseContext, fixed_rate, rate_shape
from soak.phases.spec import PhaseSpec, report_hook
from soak.summary import PhaseDetails, PhaseReport, Status
from soak.verdicts import at_least, below, settle, tier_of, tiered

READY, NOT_READY = "READY", "NOT READY"



@dataclass(frozen=True, slots=True)
class ReadinessPhase:
    """The seed's combined production run at a fixed rate."""

    rate: float
    duration: float
    latency: float


@dataclass(frozen=True, slots=True)
class ReadinessSlo:
    success_ratio: float
    throughput_ratio: float
    p95: float
    p99: float


def parse_readiness(s: Section) -> ReadinessPhase:
    s.only("rate", "duration", "latency")
    return ReadinessPhase(**rate_shape(s))


def parse_readiness_slo(s: Section) -> ReadinessSlo:
    s.only("success_ratio", "throughput_ratio", "p95", "p99")
    return ReadinessSlo(
        success_ratio=s.number("success_ratio", at_most=1.0),
        throughput_ratio=s.number("throughput_ratio", at_most=1.0),
        p95=s.duration("p95", positive=True),
        p99=s.duration("p99", positive=True),
    )


def readiness_thresholds(slo: ReadinessSlo) -> list[Threshold]:
    return [
        Threshold(REQUEST_DURATION.name, f"slo.readiness.{stat}", getattr(slo, stat))
        for stat in ("p95", "p99")
    ]


@dataclass(slots=True)
class ReadinessDetails(PhaseDetails):
    """The readiness phase's record: each criterion's value and tier (p50 graded, not gated),
    and the overall READY / NOT READY."""

    tiers: dict[str, dict[str, Any]] = field(default_factory=dict)
    verdict: str | None = None

    def headline(self) -> str | None:
        return self.verdict


async def run_readiness(ctx: PhaseContext) -> PhaseReport:
    """The seed's production readiness run: every criterion passes → READY."""
    slo, tiers = ctx.config.slo.readiness, ctx.config.slo.tiers
    report = await fixed_rate(ctx, "readiness")
    lat = report.latency if report.latency and report.latency.count else None
    rate = report.target_rate or ctx.config.phases.readiness.rate
    report.checks += [
        tiered(
            at_least("success ratio", report.success_ratio, slo.success_ratio),
            "success_ratio",
            tiers,
        ),
        tiered(
            at_least("throughput", report.throughput, slo.throughput_ratio * rate, unit="req/s"),
            "throughput",
            tiers,
        ),
        tiered(below("latency p95", lat.p95 if lat else None, slo.p95), "p95", tiers),
        tiered(below("latency p99", lat.p99 if lat else None, slo.p99), "p99", tiers),
    ]
    p50 = lat.p50 if lat else None
    graded = {
        "p50": {"value": p50, "tier": tier_of("p50", p50, tiers)},
        **{c.name: {"value": c.value, "tier": c.tier} for c in report.checks},
    }
    settle(report)
    ready = report.status == Status.PASSED
    report.details = ReadinessDetails(tiers=graded, verdict=READY if ready else NOT_READY)
    return report


PHASE = PhaseSpec(
    name="readiness",
    reference_interval=900,  # every 15 min in the committed rule files
    order=80,
    run=run_readiness,
    settings=parse_readiness,
    slo=parse_readiness_slo,
    alerts=judged_alerts,  # normal traffic: held to the success and latency tiers
    thresholds=readiness_thresholds,
    markdown=report_hook("soak.reports.resilience_md", "readiness_section"),
    details=ReadinessDetails,
)
