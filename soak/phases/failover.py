"""Failover: N requests while the primary fails every one; how many, and how fast, fail over.

The primary is faulted (HTTP 500 to every request, TTL-bounded, cleared in a `finally`) for the
whole phase; the fallback is healthy. Per request the mock's attempt trail says what happened
(`soak.failover`): tried the primary then served by the fallback (timed: first primary
attempt → end of the fallback's answer), sent straight to the fallback (the gateway's breaker
already open: failed over, not timed), served by the primary, or failed at the client.
Checks: the share failed over, and mean and max failover time (the seed's 8/10, 5 s, 10 s).
"""

from __future__ import annotations

from soak.failover import failover_stats
from soak.phases.base import PhaseContext, measure, set_mock_latency
from soak.phases.breaker import client_trails, faulted
from soak.phases.sustained import tiered
from soak.stats import summarize
from soak.summary import PhaseReport
from soak.verdicts import at_least, below, settle

MAX_LISTED = 1000
"""Failover times listed one by one in `details["times"]` (for histograms); the rest are in the
summary only."""


async def run_failover(ctx: PhaseContext) -> PhaseReport:
    phase, slo = ctx.config.phases.failover, ctx.config.slo.failover
    primary, fallback = ctx.config.mock.primary, ctx.config.mock.fallback
    timeout = ctx.config.gateway.timeout
    duration = phase.requests / phase.rate
    await set_mock_latency(ctx, phase.latency)
    async with faulted(ctx, primary, ttl=duration + timeout + 10.0):
        run, report = await measure(
            ctx,
            name="failover",
            kind="failover",
            target=ctx.gateway,
            rate=phase.rate,
            duration=duration,
            timeout=timeout,
            params={"latency": phase.latency, "requests": phase.requests, "provider": primary},
        )
    _, trails = await client_trails(ctx, run.results)
    stats = failover_stats(run.results, trails, primary, fallback)
    times = summarize(stats.timed)
    if times is not None:
        report.distributions["failover_time"] = times
    report.details.update(
        requests=stats.requests,
        failed_over=stats.failed_over,
        timed=len(stats.timed),
        direct=stats.direct,
        served_by_primary=stats.served_by_primary,
        client_errors=stats.client_errors,
        untraced=stats.untraced,
        mean=stats.mean,
        min=stats.min,
        max=stats.max,
        times=[round(t, 6) for t in stats.timed[:MAX_LISTED]],
    )
    tiers = ctx.config.slo.tiers
    report.checks += [
        at_least("failed over", stats.ratio, slo.failed_over_ratio),
        tiered(below("failover time mean", stats.mean, slo.mean), "failover_time", tiers),
        tiered(below("failover time max", stats.max, slo.max), "failover_time", tiers),
    ]
    if not stats.timed and stats.failed_over:
        report.notes.append(
            "no request tried the primary before the fallback (the gateway's breaker was "
            "already open): failover time not measured"
        )
    return settle(report)
