"""Sustained load: the seed's 1000 requests per minute, held.

Gates on completed requests against the schedule, throughput against the target rate, client
p95 and success. The seed's target / acceptable / warning tiers (`slo.tiers`) grade the p95 and
success checks (`soak.verdicts.tiered`): they grade a figure, they never fail a phase.
"""

from __future__ import annotations

from dataclasses import dataclass

from soak.alerting import judged_alerts
from soak.config.fields import Section
from soak.metric_catalogue import REQUEST_DURATION, Threshold
from soak.phases.base import PhaseContext, fixed_rate, rate_shape
from soak.phases.spec import PhaseSpec, report_hook
from soak.summary import PhaseReport
from soak.verdicts import at_least, below, settle, tiered


@dataclass(frozen=True, slots=True)
class SustainedPhase:
    """The seed's 1000 requests per minute, held for `duration`."""

    rate: float
    duration: float
    latency: float


@dataclass(frozen=True, slots=True)
class SustainedSlo:
    completed_ratio: float
    """Successful requests / scheduled requests (the seed's 900 of 1000)."""
    throughput_ratio: float
    """Achieved throughput / target rate."""
    p95: float
    success_ratio: float


def parse_sustained(s: Section) -> SustainedPhase:
    s.only("rate", "duration", "latency")
    return SustainedPhase(**rate_shape(s))


def parse_sustained_slo(s: Section) -> SustainedSlo:
    s.only("completed_ratio", "throughput_ratio", "p95", "success_ratio")
    return SustainedSlo(
        completed_ratio=s.number("completed_ratio", at_most=1.0),
        throughput_ratio=s.number("throughput_ratio", at_most=1.0),
        p95=s.duration("p95", positive=True),
        success_ratio=s.number("success_ratio", at_most=1.0),
    )


async def run_sustained(ctx: PhaseContext) -> PhaseReport:
    """The seed's sustained load: ≥ 90% of the scheduled requests completed, throughput ≥ 80%
    of the target, p95 and success bounds."""
    slo, tiers = ctx.config.slo.sustained, ctx.config.slo.tiers
    report = await fixed_rate(ctx, "sustained")
    scheduled = report.scheduled
    completed = report.completed / scheduled if scheduled else None
    p95 = report.latency.p95 if report.latency and report.latency.count else None
    rate = report.target_rate or ctx.config.phases.sustained.rate
    report.checks += [
        at_least("completed / scheduled", completed, slo.completed_ratio),
        at_least("throughput", report.throughput, slo.throughput_ratio * rate, unit="req/s"),
        tiered(below("latency p95", p95, slo.p95), "p95", tiers),
        tiered(
            at_least("success ratio", report.success_ratio, slo.success_ratio),
            "success_ratio",
            tiers,
        ),
    ]
    return settle(report)


PHASE = PhaseSpec(
    name="sustained",
    reference_interval=900,  # every 15 min in the committed rule files
    order=40,
    run=run_sustained,
    settings=parse_sustained,
    slo=parse_sustained_slo,
    alerts=judged_alerts,  # normal traffic: held to the success and latency tiers
    thresholds=lambda slo: [Threshold(REQUEST_DURATION.name, "slo.sustained.p95", slo.p95)],
    markdown=report_hook("soak.reports.resilience_md", "sustained_section"),
)
