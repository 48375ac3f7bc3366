"""Memory: N requests with ~C in flight while the gateway's RSS is sampled at 1 Hz.

The seed's "500 requests at concurrency 50" runs open loop at C / latency requests per second
for N / rate seconds: with the mock answering after `latency`, about C requests are in flight,
and the pace stays the tester's (a closed loop would let a slow gateway slow its own test).
From the samples (process tree RSS, `soak.procwatch`): initial, peak, final and mean RSS, the
seed's growth (final / initial − 1) and peak / initial, and the trend: the least-squares slope
after the warm-up, so a slow leak fails even when both ratios pass.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

from soak.alerting import TARGET, RuleWriter
from soak.config.fields import MAX_CONCURRENCY, MAX_REQUESTS, Section, span
from soak.phases.base import PhaseContext, measure, set_mock_latency
from soak.phases.spec import PhaseSpec, report_hook
from soak.procwatch import ProcessWatch, Sample, rss_slope
from soak.promql import num
from soak.summary import PhaseDetails, PhaseReport, Status
from soak.verdicts import below, settle, tiered

MB = 1024 * 1024


@dataclass(frozen=True, slots=True)
class MemoryPhase:
    """`requests` requests with ~`concurrency` in flight: open loop at concurrency / latency."""

    requests: int
    concurrency: int
    latency: float
    warmup: float
    """Seconds of RSS samples left out of the trend (start-up allocations are no leak)."""

    @property
    def rate(self) -> float:
        return self.concurrency / self.latency

    @property
    def duration(self) -> float:
        return self.requests / self.rate


@dataclass(frozen=True, slots=True)
class MemorySlo:
    growth: float
    """(final − initial) / initial RSS must stay below this (1.0 = +100%)."""
    peak_ratio: float
    """peak / initial RSS must stay below this."""
    slope_mb_per_min: float
    """RSS trend after the warm-up (least squares) must stay below this many MB per minute."""
    long_window: float = 6 * 3600.0
    """The long-window form (daemon only): seconds of continuous RSS samples the slope spans."""
    long_slope_mb_per_hour: float = 50.0
    """The gateway's RSS slope over `long_window` must stay below this many MB per hour."""

    @property
    def long_slope_bytes_per_second(self) -> float:
        return self.long_slope_mb_per_hour * MB / 3600.0


def parse_memory(s: Section) -> MemoryPhase:
    s.only("requests", "concurrency", "latency", "warmup")
    phase = MemoryPhase(
        requests=s.integer("requests", minimum=1, maximum=MAX_REQUESTS),
        concurrency=s.integer("concurrency", minimum=1, maximum=MAX_CONCURRENCY),
        latency=s.duration("latency", positive=True),
        warmup=s.duration("warmup"),
    )
    s.load_bound("requests", seconds=phase.requests * phase.latency / phase.concurrency)
    return phase


def parse_memory_slo(s: Section) -> MemorySlo:
    s.only("growth", "peak_ratio", "slope_mb_per_min", "long_window", "long_slope_mb_per_hour")
    return MemorySlo(
        growth=s.number("growth", positive=True),
        peak_ratio=s.number("peak_ratio", positive=True),
        slope_mb_per_min=s.number("slope_mb_per_min", positive=True),
        long_window=s.duration("long_window", 6 * 3600.0, at_least=60.0, at_most=7 * 86400.0),
        long_slope_mb_per_hour=s.number("long_slope_mb_per_hour", 50.0, positive=True),
    )


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


@dataclass(slots=True)
class MemoryDetails(PhaseDetails):
    """The memory phase's record: its `MemoryTrend`, where RSS was read, and the series."""

    samples: int | None = None
    initial: float | None = None
    peak: float | None = None
    final: float | None = None
    mean: float | None = None
    growth: float | None = None
    peak_ratio: float | None = None
    slope_mb_per_min: float | None = None
    source: str | None = None
    """Where RSS was read: the managed process tree, or the gateway's own metrics."""
    rss_series: list[list[float]] = field(default_factory=list)
    """`[t_rel_s, rss_bytes]` per 1 Hz sample."""


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


class ReportedRss:
    """RSS from the gateway's own metrics (`process_resident_memory_bytes`) at 1 Hz, for a
    gateway soak did not start and cannot watch by PID; the same interface as ProcessWatch."""

    def __init__(self, ctx: PhaseContext, interval: float = 1.0) -> None:
        self.ctx, self.interval = ctx, interval
        self.samples: list[Sample] = []
        self.vanished = False
        self._task: asyncio.Task[None] | None = None

    async def first(self) -> bool:
        """Take the initial sample; False when the gateway reports no RSS."""
        await self._sample()
        return bool(self.samples)

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._run())

    async def _sample(self) -> None:
        report = await self.ctx.self_report() if self.ctx.self_report else None
        if report is not None and report.rss_bytes:
            self.samples.append(Sample(time.monotonic(), None, int(report.rss_bytes), 0, 0, 0))

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            await self._sample()

    async def stop(self) -> list[Sample]:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        return list(self.samples)


async def _watcher(ctx: PhaseContext) -> tuple[ProcessWatch | ReportedRss | None, str]:
    """The RSS source: the gateway's process tree by PID, else its own metrics, else none."""
    pid = ctx.gateway_pid()
    if pid is not None:
        return ProcessWatch(pid, interval=1.0), "process tree (psutil, by PID)"
    reported = ReportedRss(ctx)
    if await reported.first():
        return reported, "gateway metrics (process_resident_memory_bytes)"
    return None, ""


async def run_memory(ctx: PhaseContext) -> PhaseReport:
    phase, slo = ctx.config.phases.memory, ctx.config.slo.memory
    await set_mock_latency(ctx, phase.latency)
    watch, source = await _watcher(ctx)
    if watch is None:
        return PhaseReport(
            name="memory",
            kind="memory",
            status=Status.SKIPPED,
            error="the gateway's memory is unknown: give gateway.managed so soak starts it and "
            "watches its process, or have it serve process_resident_memory_bytes on its metrics",
        )
    watch.start()  # ProcessWatch samples at once: the initial RSS, before the load
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
    series = [[round(s.t - samples[0].t, 2), float(s.rss)] for s in samples]
    report.details = MemoryDetails(**asdict(trend), source=source, rss_series=series)
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


LONG_SLOPE_FOR = "10m"


def long_slope_alert(r: RuleWriter, slo: MemorySlo) -> None:
    """The long-window memory verdict as an alert: the daemon's RSS slope of the gateway over
    `slo.memory.long_window` above `long_slope_mb_per_hour` (a target-level alert: the gauge
    exists whatever the schedule runs, as long as the daemon manages the gateway)."""
    metric = "soak_gateway_memory_slope_bytes_per_second"
    limit = slo.long_slope_bytes_per_second
    r.alert("SoakGatewayMemoryLongSlope", f"{metric} > {num(round(limit, 3))}", LONG_SLOPE_FOR,
            "warning", f"Gateway RSS rising over the long window on {TARGET}",
            f"The gateway's resident memory grew {{{{ $value | humanize1024 }}}}B/s over the "
            f"last {span(slo.long_window)} of continuous samples (at most "
            f"{slo.long_slope_mb_per_hour:g} MB/h): a leak too slow for any phase to see.",
            )  # fmt: skip


PHASE = PhaseSpec(
    name="memory",
    reference_interval=3600,  # hourly in the committed rule files
    target_alerts=long_slope_alert,
    order=70,
    run=run_memory,
    settings=parse_memory,
    slo=parse_memory_slo,
    markdown=report_hook("soak.reports.resilience_md", "memory_section"),
    details=MemoryDetails,
)
