"""Sustained load: the seed's 1000 requests per minute, held, and the tiers every phase grades by.

Gates on completed requests against the schedule, throughput against the target rate, client
p95 and success. The seed's target / acceptable / warning tiers (`slo.tiers`) are attached to
every check of a tiered metric (`tiered`): they grade a figure, they never fail a phase.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from soak.config.schema import HIGHER_IS_BETTER, Tier
from soak.phases.base import PhaseContext, measure, set_mock_latency
from soak.summary import Check, PhaseReport
from soak.verdicts import at_least, below, settle


def tier_of(metric: str, value: float | None, tiers: Mapping[str, Tier]) -> str | None:
    """`target`, `acceptable` or `warning` for `value` of `metric`; None without a tier or value."""
    tier = tiers.get(metric)
    if tier is None or value is None:
        return None
    if metric in HIGHER_IS_BETTER:
        return (
            "target"
            if value >= tier.target
            else "acceptable"
            if value >= tier.acceptable
            else "warning"
        )
    return (
        "target" if value < tier.target else "acceptable" if value < tier.acceptable else "warning"
    )


def tiered(check: Check, metric: str, tiers: Mapping[str, Tier]) -> Check:
    """`check` with the tier of its value."""
    return replace(check, tier=tier_of(metric, check.value, tiers))


async def fixed_rate(ctx: PhaseContext, name: str) -> PhaseReport:
    phase = getattr(ctx.config.phases, name)
    await set_mock_latency(ctx, phase.latency)
    run, report = await measure(
        ctx,
        name=name,
        kind=name,
        target=ctx.gateway,
        rate=phase.rate,
        duration=phase.duration,
        timeout=ctx.config.gateway.timeout,
        params={"latency": phase.latency},
    )
    report.details["scheduled"] = run.scheduled
    return report


async def run_sustained(ctx: PhaseContext) -> PhaseReport:
    """The seed's sustained load: ≥ 90% of the scheduled requests completed, throughput ≥ 80%
    of the target, p95 and success bounds."""
    slo, tiers = ctx.config.slo.sustained, ctx.config.slo.tiers
    report = await fixed_rate(ctx, "sustained")
    scheduled = report.details["scheduled"]
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
