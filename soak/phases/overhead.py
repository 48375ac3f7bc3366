"""Calibration and overhead: the same load direct to the mock, then through the gateway.

The seed's method subtracts the calibration's percentiles from the through-gateway ones; ours
subtracts each request's own mock service time from its client latency. Both are reported; the
SLO gates on ours, which is a true distribution of what the gateway added.
"""

from __future__ import annotations

from soak.phases.base import PhaseContext, measure, set_mock_latency, warm_up
from soak.stats import percentile_diff_summary
from soak.summary import PhaseReport, Status
from soak.verdicts import at_least, latency_checks, settle


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
