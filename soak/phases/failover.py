"""Failover: N requests while the primary fails every one; how many, and how fast, fail over.

The primary is faulted (HTTP 500 to every request, TTL-bounded, cleared in a `finally`) for the
whole phase; the fallback is healthy. Per request the mock's attempt trail says what happened
(`soak.failover`): tried the primary then served by the fallback (timed: first primary
attempt → end of the fallback's answer), sent straight to the fallback (the gateway's breaker
already open: failed over, not timed), served by the primary, or failed at the client.
Checks: the share failed over, and mean and max failover time (the seed's 8/10, 5 s, 10 s).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from soak.alerting import LEVELS, TARGET, RuleWriter, ms
from soak.config.fields import MAX_RATE, MAX_REQUESTS, RATE_HINT, Section
from soak.failover import failover_stats
from soak.metric_catalogue import FAILOVER, Threshold
from soak.phases.base import PhaseContext, measure, set_mock_latency
from soak.phases.spec import PhaseSpec, report_hook
from soak.phases.trails import client_trails, faulted
from soak.promql import agg, count_above, gated, num, ratio
from soak.stats import summarize
from soak.summary import PhaseDetails, PhaseReport, Status
from soak.verdicts import at_least, below, settle, tiered

MAX_LISTED = 1000
"""Failover times listed one by one in `FailoverDetails.times` (for histograms); the rest are
in the summary only."""


@dataclass(slots=True)
class FailoverDetails(PhaseDetails):
    """The failover phase's record: what each request did (`soak.failover.failover_stats`)
    and the failover times (seconds)."""

    requests: int | None = None
    failed_over: int | None = None
    timed: int | None = None
    """Failed over after trying the primary first: these are timed."""
    direct: int | None = None
    """Sent straight to the fallback (the gateway's breaker already open)."""
    served_by_primary: int | None = None
    client_errors: int | None = None
    untraced: int | None = None
    mean: float | None = None
    min: float | None = None
    max: float | None = None
    times: list[float] = field(default_factory=list)
    """The first `MAX_LISTED` timed failovers, one by one."""



@dataclass(frozen=True, slots=True)
class FailoverPhase:
    """`requests` requests at `rate` while the primary fails every request."""

    requests: int
    rate: float
    latency: float


@dataclass(frozen=True, slots=True)
class FailoverSlo:
    failed_over_ratio: float
    mean: float
    max: float


def parse_failover(s: Section) -> FailoverPhase:
    s.only("requests", "rate", "latency")
    phase = FailoverPhase(
        requests=s.integer("requests", minimum=1, maximum=MAX_REQUESTS),
        rate=s.number("rate", positive=True, at_most=MAX_RATE, hint=RATE_HINT),
        latency=s.duration("latency"),
    )
    s.load_bound("rate", seconds=phase.requests / phase.rate)  # requests at a rate take time
    return phase


def parse_failover_slo(s: Section) -> FailoverSlo:
    s.only("failed_over_ratio", "mean", "max")
    return FailoverSlo(
        failed_over_ratio=s.number("failed_over_ratio", at_most=1.0),
        mean=s.duration("mean", positive=True),
        max=s.duration("max", positive=True),
    )


def failover_thresholds(slo: FailoverSlo) -> list[Threshold]:
    return [
        Threshold(FAILOVER.name, "slo.failover.mean", slo.mean),
        Threshold(FAILOVER.name, "slo.failover.max", slo.max),
    ]


def record_failover(report: PhaseReport, metrics: Any, target: str) -> None:
    """Each timed failover of the run into `soak_failover_seconds`."""
    if report.status is Status.SKIPPED:
        return
    for seconds in report.record(FailoverDetails).times:
        metrics.observe_failover(float(seconds), target=target, phase=report.kind)


def failover_alerts(
    r: RuleWriter, slo: FailoverSlo, *, phase: str, window: str, tiers: Any, **_: object
) -> None:
    """Mean failover time against the `failover_time` tiers; any failover above `max`."""
    metric, sel = FAILOVER.name, f'phase="{phase}"'
    count = agg("increase", f"{metric}_count", sel, window)
    mean = ratio(agg("increase", f"{metric}_sum", sel, window), count)
    tier = tiers.get("failover_time")
    for level, severity in LEVELS if tier is not None else ():
        limit = getattr(tier, level)
        r.alert("SoakFailoverSlow", gated(f"{mean}\n> {num(limit)}", count, 1), "5m",
                severity, f"Mean failover time above {ms(limit)} on {TARGET}",
                f"Failed-over requests in the last {window} took "
                f"{{{{ $value | humanizeDuration }}}} on average to reach the fallback "
                f"({level} tier: {ms(limit)}).", tier=level)  # fmt: skip
    above, _ = count_above(metric, sel, slo.max, window)
    r.alert("SoakFailoverMaxExceeded", f"{above}\n> 0", "1m", "warning",
            f"A failover took longer than {ms(slo.max)} on {TARGET}",
            f"{{{{ $value | humanize }}}} failed-over requests in the last {window} took "
            f"longer than {ms(slo.max)} to reach the fallback.")  # fmt: skip


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
    report.details = FailoverDetails(
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


PHASE = PhaseSpec(
    name="failover",
    reference_interval=3600,  # hourly in the committed rule files
    order=60,
    run=run_failover,
    settings=parse_failover,
    slo=parse_failover_slo,
    in_error_budget=False,  # the primary fails every request on purpose
    thresholds=failover_thresholds,
    histograms=(FAILOVER.name,),
    record=record_failover,
    alerts=failover_alerts,
    markdown=report_hook("soak.reports.resilience_md", "failover_section"),
    details=FailoverDetails,
)
