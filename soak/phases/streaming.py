"""Streaming: many concurrent long streams through the gateway, token timing and integrity.

The mock streams every answer slowly (`phases.streaming`: first token after `ttft`, then a
token every `inter_token`), so `streams` started over `ramp` are all open at once. Each stream
is timed chunk by chunk on the client, then compared after the phase, in one batch, with the
mock's trace of what it sent (`soak.streaming`). The gateway's process tree is sampled
throughout: RSS and open descriptors before the first stream and `settle` seconds after the
last one ended must agree within the SLO's bounds (a gateway that keeps a socket or a buffer
per finished stream fails here).
"""

from __future__ import annotations

import asyncio
import dataclasses
from dataclasses import dataclass, field
from typing import Any

from soak.alerting import TARGET, RuleWriter, ms, pct
from soak.client import make_session
from soak.config.fields import MAX_CONCURRENCY, Section
from soak.metric_catalogue import TPOT, TTFT, MetricSpec, Threshold
from soak.phases.base import PhaseContext, chat_client, measure
from soak.phases.spec import PhaseSpec, report_hook
from soak.procwatch import ProcessWatch, Sample
from soak.promql import count_above, gated, num, ratio
from soak.streaming import Bounds, StreamStats, analyze, sent_of
from soak.summary import Check, PhaseDetails, PhaseReport
from soak.verdicts import at_least, below, latency_checks, settle

_BASELINE_WAIT = 1.2
"""Seconds the watch runs before the first stream, so the "before" sample precedes the load."""
_WARMUP_TTFT = 1.0


@dataclass(frozen=True, slots=True)
class StreamingPhase:
    """`streams` long streams started evenly over `ramp`, the mock answering each with a first
    token after `ttft`, then `tokens` − 1 more, `inter_token` apart; the gateway's memory and
    descriptors are compared before the first stream and `settle` after the last one ended."""

    streams: int = 40
    ramp: float = 4.0
    ttft: float = 0.2
    inter_token: float = 0.25
    tokens: int = 80
    stall: float = 2.0
    """A gap between two content chunks above this is a stall."""
    settle: float = 3.0
    warmup: bool = True
    """Before the "before" sample, open `streams` short streams at once (a watched gateway)."""
    timeout: float = 60.0
    """Per-stream client timeout; must outlast a stream (ttft + (tokens − 1) × inter_token)."""

    @property
    def stream_time(self) -> float:
        """How long the mock takes to send one whole stream."""
        return self.ttft + (self.tokens - 1) * self.inter_token


@dataclass(frozen=True, slots=True)
class StreamingSlo:
    """Bounds on what the gateway added to streams, their integrity, and per-request goodput."""

    added_ttft_p50: float = 0.005
    """Gateway-added time to first token (client TTFT − the mock's own), at p50."""
    added_ttft_p99: float = 0.1
    added_tpot_p50: float = 0.001
    """Gateway-added time per output token (client TPOT − the mock's own), at p50."""
    whole_ratio: float = 1.0
    """Share of streams that must arrive whole (chunk for chunk what the mock sent)."""
    ttft: float = 1.0
    """Goodput: a stream counts when its TTFT, TPOT and E2E are within these bounds."""
    tpot: float = 0.5
    e2e: float = 40.0
    goodput_ratio: float = 0.99
    """Goodput / rate of successful streams."""
    rss_growth: float = 0.25
    """The gateway's RSS after the streams (and `settle`) / before − 1."""
    fds_growth: int = 16
    """Open descriptors after the streams (and `settle`) − before."""


DEFAULT_STREAMING = StreamingPhase()
DEFAULT_STREAMING_SLO = StreamingSlo()
@dataclass(slots=True)
class StreamingDetails(PhaseDetails):
    """The streaming phase's record, under one key as report.json has it: the figures of
    `StreamStats.to_details` (streams, integrity classes, goodput), the slow gaps, the
    warm-up, and the gateway process before / after the streams."""

    streaming: dict[str, Any] = field(default_factory=dict)


PHASE_KEYS = ("streams", "ramp", "ttft", "inter_token", "tokens", "stall", "settle", "warmup",
              "timeout")  # fmt: skip
SLO_KEYS = ("added_ttft_p50", "added_ttft_p99", "added_tpot_p50", "whole_ratio", "ttft", "tpot",
            "e2e", "goodput_ratio", "rss_growth", "fds_growth")  # fmt: skip


def parse_streaming(s: Section) -> StreamingPhase:
    """`phases.streaming`, each missing key at its default."""
    s.only(*PHASE_KEYS)
    d = DEFAULT_STREAMING
    phase = StreamingPhase(
        streams=s.integer("streams", d.streams, minimum=1, maximum=MAX_CONCURRENCY),
        ramp=s.duration("ramp", d.ramp, positive=True),
        ttft=s.duration("ttft", d.ttft),
        inter_token=s.duration("inter_token", d.inter_token),
        tokens=s.integer("tokens", d.tokens, minimum=2),
        stall=s.duration("stall", d.stall, positive=True),
        settle=s.duration("settle", d.settle),
        warmup=s.boolean("warmup", d.warmup),
        timeout=s.duration("timeout", d.timeout, positive=True),
    )
    if phase.stall <= phase.inter_token:
        s.fail(
            "stall",
            f"must be above inter_token ({phase.inter_token:g}s)",
            "every gap would be a stall",
        )
    if phase.timeout <= phase.stream_time:
        s.fail(
            "timeout",
            f"must outlast one stream ({phase.stream_time:g}s = ttft + (tokens - 1) x inter_token)",
        )
    return phase


def parse_streaming_slo(s: Section) -> StreamingSlo:
    """`slo.streaming`, each missing key at its default."""
    s.only(*SLO_KEYS)
    d = DEFAULT_STREAMING_SLO
    return StreamingSlo(
        added_ttft_p50=s.duration("added_ttft_p50", d.added_ttft_p50, positive=True),
        added_ttft_p99=s.duration("added_ttft_p99", d.added_ttft_p99, positive=True),
        added_tpot_p50=s.duration("added_tpot_p50", d.added_tpot_p50, positive=True),
        whole_ratio=s.number("whole_ratio", d.whole_ratio, at_most=1.0),
        ttft=s.duration("ttft", d.ttft, positive=True),
        tpot=s.duration("tpot", d.tpot, positive=True),
        e2e=s.duration("e2e", d.e2e, positive=True),
        goodput_ratio=s.number("goodput_ratio", d.goodput_ratio, at_most=1.0),
        rss_growth=s.number("rss_growth", d.rss_growth, positive=True),
        fds_growth=s.integer("fds_growth", d.fds_growth, minimum=0),
    )


async def set_stream_profile(
    ctx: PhaseContext, ttft: float, inter_token: float, tokens: int
) -> None:
    """Primary and fallback stream: first token after `ttft`, then one every `inter_token`."""

    def fixed(value: float) -> dict[str, Any]:
        return {"model": "fixed", "value": value}

    profile = {
        "latency": fixed(ttft),
        "stream": {"ttft": fixed(ttft), "inter_token": fixed(inter_token), "tokens": tokens},
    }
    for provider in (ctx.config.mock.primary, ctx.config.mock.fallback):
        await ctx.mock.set_profile(provider, profile)


async def warm_up(ctx: PhaseContext, phase: StreamingPhase) -> dict[str, int]:
    """`streams` short streams all open at once (the mock holds each first token for
    `_WARMUP_TTFT`), so the gateway's first-use allocations and its connection pool towards
    the mock exist before the "before" sample: what stays after the load is per stream."""
    await set_stream_profile(ctx, _WARMUP_TTFT, 0.0, 2)
    async with make_session(min(phase.streams, 4096), phase.timeout) as session:
        client = chat_client(ctx, session, ctx.gateway, phase="streaming-warmup",
                             timeout=phase.timeout, stream=True, max_tokens=2)  # fmt: skip
        results = await asyncio.gather(*(client.send(i, 0.0) for i in range(phase.streams)))
    return {"streams": len(results), "ok": sum(r.ok for r in results)}


def streaming_context(ctx: PhaseContext, phase: StreamingPhase) -> PhaseContext:
    """`ctx` with requests streamed and `max_tokens` = the phase's tokens."""
    cfg = ctx.config
    request = dataclasses.replace(cfg.request, stream=True, max_tokens=phase.tokens)
    return dataclasses.replace(ctx, config=dataclasses.replace(cfg, request=request))


async def run_streaming(ctx: PhaseContext) -> PhaseReport:
    phase, slo = ctx.config.phases.streaming, ctx.config.slo.streaming
    pid = ctx.gateway_pid()
    watch = ProcessWatch(pid, interval=0.5) if pid else None
    warmed: dict[str, int] | None = None
    load_started = 0.0
    try:
        if watch is not None:
            watch.start()
            if phase.warmup:
                warmed = await warm_up(ctx, phase)
            await asyncio.sleep(_BASELINE_WAIT)
            load_started = watch.clock()
        await set_stream_profile(ctx, phase.ttft, phase.inter_token, phase.tokens)
        run, report = await measure(
            streaming_context(ctx, phase),
            name="streaming",
            kind="streaming",
            target=ctx.gateway,
            rate=phase.streams / phase.ramp,
            duration=phase.ramp,
            timeout=phase.timeout,
            params={
                "streams": phase.streams,
                "ttft": phase.ttft,
                "inter_token": phase.inter_token,
                "tokens": phase.tokens,
                "stream_time": phase.stream_time,
                "stall": phase.stall,
            },
        )
        if watch is not None and phase.settle > 0 and not ctx.stop.is_set():
            await asyncio.sleep(phase.settle)
    finally:
        samples = await watch.stop() if watch is not None else []
    nonces = [r.nonce for r in run.results if r.nonce]
    traces = await ctx.mock.traces(nonces) if nonces else {}
    sent = {r.nonce: sent_of(traces.get(r.nonce, []), r.provider) for r in run.results if r.nonce}
    stats = analyze(
        run.results,
        sent,
        stall=phase.stall,
        bounds=Bounds(ttft=slo.ttft, tpot=slo.tpot, e2e=slo.e2e),
        duration=max(run.elapsed, 1e-9),
    )
    report.distributions.update(stats.distributions)
    details = stats.to_details()
    # gaps above twice the mock's inter-token delay yet below the stall bound: held, then burst
    slow = 2 * phase.inter_token
    details["slow_gaps"] = sum(1 for r in run.results for g in r.chunk_gaps or () if g > slow)
    report.checks += stream_checks(stats, slo)
    flat = flatness(samples, load_started)
    if warmed is not None:
        details["warmup"] = warmed
    if flat is None:
        report.notes.append(
            "the gateway process is not watched (give gateway.managed): RSS and descriptors "
            "after the streams were not compared"
        )
    else:
        details["process"] = flat
        report.checks += flat_checks(flat, slo)
    report.details = StreamingDetails(details)
    return settle(report)


def stream_checks(stats: StreamStats, slo: StreamingSlo) -> list[Check]:
    """Gateway-added TTFT and TPOT, whole streams, goodput against the SLO block."""
    dist = stats.distributions
    checks = latency_checks(
        "added TTFT", dist.get("added_ttft"), {"p50": slo.added_ttft_p50, "p99": slo.added_ttft_p99}
    )
    checks += latency_checks("added TPOT", dist.get("added_tpot"), {"p50": slo.added_tpot_p50})
    checks.append(at_least("whole streams", stats.whole_ratio, slo.whole_ratio))
    ratio = stats.goodput / stats.request_rate if stats.request_rate > 0 else None
    checks.append(at_least("goodput / rate", ratio, slo.goodput_ratio))
    return checks


def flatness(samples: list[Sample], load_started: float) -> dict[str, Any] | None:
    """RSS and descriptors before the load (last sample before it) and after (last sample);
    None with fewer than two samples."""
    if len(samples) < 2:
        return None
    before = [s for s in samples if s.t <= load_started] or samples[:1]
    b, a = before[-1], samples[-1]
    return {
        "samples": len(samples),
        "rss_before": b.rss,
        "rss_after": a.rss,
        "rss_peak": max(s.rss for s in samples),
        "fds_before": b.fds,
        "fds_after": a.fds,
        "fds_peak": max(s.fds for s in samples),
        "rss_growth": a.rss / b.rss - 1.0 if b.rss > 0 else None,
        "fds_growth": a.fds - b.fds,
        "series": [[round(s.t - samples[0].t, 2), s.rss, s.fds] for s in samples],
    }


def flat_checks(flat: dict[str, Any], slo: StreamingSlo) -> list[Check]:
    fds = flat["fds_growth"]
    return [
        below("RSS after streams / before - 1", flat["rss_growth"], slo.rss_growth, unit="ratio"),
        Check(
            name="open fds after streams - before",
            value=float(fds),
            op="<=",
            threshold=float(slo.fds_growth),
            unit="fds",
            passed=fds <= slo.fds_growth,
        ),
    ]


STREAM_INTEGRITY = MetricSpec("soak_stream_integrity_total", "counter",
    ("target", "phase", "class"),
    "Streams by integrity against what the mock sent: whole, rechunked, buffered, stalled, "
    "unterminated, truncated, untraced, failed.",
)


def record_streaming(report: PhaseReport, metrics: Any, target: str) -> None:
    """The run's streams by integrity class into `soak_stream_integrity_total`."""
    integrity = report.record(StreamingDetails).streaming.get("integrity") or {}
    for cls, count in integrity.items():
        metrics.child(STREAM_INTEGRITY, target, report.kind, cls).inc(count)


def streaming_thresholds(slo: StreamingSlo) -> list[Threshold]:
    """The goodput bounds that have a histogram (TTFT, TPOT): alerts count streams above them
    exactly, so each is a bucket bound."""
    return [
        Threshold(TTFT.name, "slo.streaming.ttft", slo.ttft),
        Threshold(TPOT.name, "slo.streaming.tpot", slo.tpot),
    ]


def _streams(sel: str, window: str) -> str:
    """Streams counted in `window` per (target, phase), by `soak_stream_integrity_total`.

    The counter is written when a run ends, so its series appear with the first run's count:
    increase() would miss that run after every daemon start. A series new in the window (or
    reset in it) counts whole; any other counts its growth over the window."""
    m = f"{STREAM_INTEGRITY.name}{{{sel}}}"
    return f"sum by (target, phase) (\n  ({m} - {m} offset {window}) >= 0\n  or {m}\n)"


def streaming_alerts(
    r: RuleWriter, slo: StreamingSlo, *, phase: str, window: str, **_: object
) -> None:
    """Streams slower than the goodput bounds (TTFT, TPOT; their share beyond what
    `goodput_ratio` allows, counted exactly in the histograms), and streams not whole."""
    sel, allowed = f'phase="{phase}"', round(1 - slo.goodput_ratio, 9)
    for name, metric, limit, what in (
        ("SoakStreamTtftHigh", TTFT.name, slo.ttft, "time to first token"),
        ("SoakStreamTpotHigh", TPOT.name, slo.tpot, "time per output token"),
    ):
        above, count = count_above(metric, sel, limit, window)
        r.alert(name, gated(f"{ratio(above, count)}\n> {num(allowed)}", count, 1), "5m",
                "warning", f"Stream {what} above {ms(limit)} on {TARGET}",
                f"{{{{ $value | humanizePercentage }}}} of {phase}-phase streams in the last "
                f"{window} had a {what} above {ms(limit)}; goodput of "
                f"{pct(slo.goodput_ratio)} allows at most {pct(allowed)}.")  # fmt: skip
    total = _streams(sel, window)
    broken = _streams(f'{sel}, class!="whole"', window)
    need = round(1 - slo.whole_ratio, 9)
    r.alert("SoakStreamIntegrityLow", gated(f"{ratio(broken, total)}\n> {num(need)}", total, 1),
            "5m", "warning", f"Streams not delivered whole on {TARGET}",
            f"{{{{ $value | humanizePercentage }}}} of {phase}-phase streams in the last {window} "
            "did not arrive chunk for chunk as the mock sent them (rechunked, buffered, stalled, "
            f"cut or untraced); the SLO requires {pct(slo.whole_ratio)} whole.")  # fmt: skip


PHASE = PhaseSpec(
    name="streaming",
    reference_interval=3600,  # hourly in the committed rule files
    order=100,
    run=run_streaming,
    settings=parse_streaming,
    slo=parse_streaming_slo,
    on_demand=True,  # minutes of long streams: run when named
    record=record_streaming,
    thresholds=streaming_thresholds,
    alerts=streaming_alerts,
    markdown=report_hook("soak.reports.streaming_md", "streaming_section"),
    details=StreamingDetails,
    metrics=(STREAM_INTEGRITY,),
)
