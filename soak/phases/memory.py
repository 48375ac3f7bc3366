"""Memory: N requests with ~C in flight while the gateway's RSS is sampled at 1 Hz.

The seed's "500 requests at concurrency 50" runs open loop at C / latency requests per second
for N / rate seconds: with the mock answering after `latency`, about C requests are in flight,
and the pace stays the tester's (a closed loop would let a slow gateway slow its own test).
From the samples (process tree RSS, `soak.procwatch`): initial, peak, final and mean RSS, the
seed's growth (final / initial − 1) and peak / initial, and the trend: the least-squares slope
after the warm-up, so a slow leak fails even when both ratios pass.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass

from soak.phases.base import PhaseContext, measure, set_mock_latency
from soak.phases.sustained import tiered
from soak.procwatch import ProcessWatch, Sample, rss_slope
from soak.summary import PhaseReport, Status
from soak.verdicts import below, settle

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MemoryTrend:
    """RSS over a phase (bytes), its ratios, and its slope after the warm-up."""

    samples: int
    initial: float
    peak: float
    final: float
    mean: float
    growth: float | None
    """final / initial − 1 (0.25 = +25%)."""
    peak_ratio: float | None
    slope_mb_per_min: float | None
    """Least-squares RSS slope after the warm-up; None with fewer than two samples left."""


def memory_trend(samples: Sequence[Sample], warmup: float) -> MemoryTrend | None:
    """The trend of `samples` (None without any)."""
    if not samples:
        return None
    rss = [float(s.rss) for s in samples]
    initial, final = rss[0], rss[-1]
    slope = rss_slope(samples, warmup)
    return MemoryTrend(
        samples=len(rss),
        initial=initial,
        peak=max(rss),
        final=final,
        mean=sum(rss) / len(rss),
        growth=final / initial - 1.0 if initial > 0 else None,
        peak_ratio=max(rss) / initial if initial > 0 else None,
        slope_mb_per_min=None if slope is None else slope * 60.0 / MB,
    )


async def run_memory(ctx: PhaseContext) -> PhaseReport:
    phase, slo = ctx.config.phases.memory, ctx.config.slo.memory
    pid = ctx.gateway_pid()
    if pid is None:
        return PhaseReport(
            name="memory",
            kind="memory",
            status=Status.SKIPPED,
            error="the gateway's process is unknown: give gateway.managed so soak starts it "
            "and watches its RSS",
        )
    await set_mock_latency(ctx, phase.latency)
    watch = ProcessWatch(pid, interval=1.0)
    watch.start()  # first sample now, before the load: the initial RSS
    try:
        _, report = await measure(
            ctx,
            name="memory",
            kind="memory",
            target=ctx.gateway,
            rate=phase.rate,
            duration=phase.duration,
            timeout=ctx.config.gateway.timeout,
            params={
                "latency": phase.latency,
                "requests": phase.requests,
                "concurrency": phase.concurrency,
                "warmup": phase.warmup,
            },
        )
    finally:
        samples = await watch.stop()
    trend = memory_trend(samples, phase.warmup)
    if trend is None:
        report.error = "no RSS sample of the gateway was taken"
        report.checks.append(below("memory growth", None, slo.growth, unit="ratio"))
        return settle(report)
    report.details.update(asdict(trend))
    report.details["rss_series"] = [[round(s.t - samples[0].t, 2), s.rss] for s in samples]
    report.checks += [
        tiered(
            below("memory growth", trend.growth, slo.growth, unit="ratio"),
            "memory_growth",
            ctx.config.slo.tiers,
        ),
        below("peak / initial RSS", trend.peak_ratio, slo.peak_ratio, unit="x"),
        below(
            "RSS slope after warm-up", trend.slope_mb_per_min, slo.slope_mb_per_min, unit="MB/min"
        ),
    ]
    if watch.vanished:
        report.notes.append("the gateway process went away during the phase")
    return settle(report)
