"""Production readiness: the seed's combined run at a fixed rate, READY / NOT READY.

Every criterion (success, throughput against the target rate, p95, p99) must pass for READY;
each carries the seed's target / acceptable / warning tier, and p50 is graded too (no gate).
"""

from __future__ import annotations

from soak.phases.base import PhaseContext
from soak.phases.sustained import fixed_rate, tier_of, tiered
from soak.summary import PhaseReport, Status
from soak.verdicts import at_least, below, settle

READY, NOT_READY = "READY", "NOT READY"


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
    report.details["tiers"] = {
        "p50": {"value": p50, "tier": tier_of("p50", p50, tiers)},
        **{c.name: {"value": c.value, "tier": c.tier} for c in report.checks},
    }
    settle(report)
    ready = report.status == Status.PASSED
    report.details["verdict"] = READY if ready else NOT_READY
    return report
