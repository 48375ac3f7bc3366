"""What every phase shares: where to send, the mock's latency, one measured load run.

A phase sets the mock's behaviour through its control API, runs one open-loop load with the
engine, watches the gateway process meanwhile, and turns the `LoadRun` into a `PhaseReport`.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from soak.breakdown import breakdown
from soak.client import ChatClient, make_session
from soak.config.fields import MAX_RATE, RATE_HINT, Section
from soak.config.schema import Config
from soak.config.workload import WorkloadConfig
from soak.engine import LoadRun, LoadSpec
from soak.gateway.selfreport import SelfReport
from soak.mockctl import MockControl
from soak.pacing import expected_count
from soak.procwatch import ProcessWatch, Sample, summarize
from soak.results import Result
from soak.stats import report_fields
from soak.summary import LatencySummary, PhaseReport, Status
from soak.verify import TraceVerifier, Verification
from soak.workers import resolve, run_load_workers
from soak.workload import RequestPlan

_MAX_CONNECTIONS = 4096
"""Client pool ceiling: enough for the seed's ~1,000 in flight, bounded (see client.py)."""


@dataclass(frozen=True, slots=True)
class Target:
    """An endpoint a phase sends to. `headers` may hold secrets: never log or report them."""

    name: str
    url: str
    model: str
    headers: dict[str, str] = field(default_factory=dict, repr=False)
    api: str = "openai"


class ProgressSink(Protocol):
    """Where a phase reports how far it got (`soak.reports.progress.Progress` prints it):
    declared here so phases never import the reports that render their results."""

    def phase_started(self, name: str, expected_requests: int, duration: float) -> None: ...

    def update(self, sent: int, completed: int, failed: int) -> None: ...


@dataclass(slots=True)
class PhaseContext:
    """Everything a phase needs from the run around it."""

    config: Config
    run_id: str
    mock: MockControl
    direct: Target
    """The mock's primary provider, straight (calibration)."""
    gateway: Target
    progress: ProgressSink
    stop: asyncio.Event
    gateway_pid: Callable[[], int | None] = lambda: None
    restart_gateway: Callable[[], Awaitable[None]] | None = None
    baselines: dict[str, LatencySummary] = field(default_factory=dict)
    """Summaries later phases compare against (calibration latency)."""
    observe: Callable[[Result, str], None] | None = None
    """Called with every Result and its phase name (the daemon's metrics); must be cheap."""
    on_process_sample: Callable[[Sample], object] | None = None
    """Called with each 1 Hz sample of the gateway process during a phase (live gauges)."""
    self_report: Callable[[], Awaitable[SelfReport | None]] | None = None
    """One scrape of what the gateway says about itself (its kind knows where)."""


def rate_shape(s: Section) -> dict[str, float]:
    """`rate`, `duration` and `latency` of a fixed-rate phase's section (all required), bounded:
    rate <= MAX_RATE per replica, duration <= 7 days, rate x duration <= MAX_REQUESTS."""
    shape = {
        "rate": s.number("rate", positive=True, at_most=MAX_RATE, hint=RATE_HINT),
        "duration": s.duration("duration", positive=True),
        "latency": s.duration("latency"),
    }
    s.load_bound("duration", requests=shape["rate"] * shape["duration"])
    return shape


async def fixed_rate(ctx: PhaseContext, name: str) -> PhaseReport:
    """One load through the gateway at the phase's `rate`, `duration` and mock `latency`;
    `scheduled` holds how many requests the schedule asked for."""
    phase = ctx.config.phases[name]
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
    report.scheduled = run.scheduled
    return report


async def set_mock_latency(ctx: PhaseContext, latency: float) -> None:
    """Give the primary and fallback providers a fixed latency (time to first token for streams)."""
    fixed = {"model": "fixed", "value": latency}
    profile: dict[str, Any] = {"latency": fixed, "stream": {"ttft": fixed}}
    if (tokens := answer_cap(ctx.config)) is not None:
        profile["tokens"] = profile["stream"]["tokens"] = tokens  # the mock answers max_tokens
    for provider in (ctx.config.mock.primary, ctx.config.mock.fallback):
        await ctx.mock.set_profile(provider, profile)


def shard_rate(config: Config, rate: float) -> float:
    """Sharding hook: this replica's share of a phase's `rate` (rate / shard count)."""
    return config.shard.scale(rate)


async def measure(
    ctx: PhaseContext,
    *,
    name: str,
    kind: str,
    target: Target,
    rate: float,
    duration: float,
    timeout: float,
    params: dict[str, Any],
) -> tuple[LoadRun, PhaseReport]:
    """One open-loop load of `rate` for `duration` at `target`, the gateway process watched.

    `rate` is the whole fleet's: with N shards each replica sends rate/N (`shard_rate`).
    """
    cfg = ctx.config
    rate = shard_rate(cfg, rate)
    spec = load_spec(ctx, rate=rate, duration=duration, timeout=timeout)
    through_gateway = target is ctx.gateway
    before = await ctx.self_report() if through_gateway and ctx.self_report else None
    pid = ctx.gateway_pid() if through_gateway else None
    watch = ProcessWatch(pid, on_sample=ctx.on_process_sample) if pid else None
    if watch is not None:
        watch.start()
    started_at = time.time()
    expected = expected_count(spec.arrivals(), duration=duration, count=None)
    ctx.progress.phase_started(name, expected, duration)
    counts = [0, 0, 0]  # finished, ok, failed
    observe = ctx.observe

    def on_result(result: Result) -> None:
        counts[0] += 1
        counts[1 if result.ok else 2] += 1
        ctx.progress.update(counts[0], counts[1], counts[2])
        if observe is not None:
            observe(result, name)

    # Through the gateway every answer is checked against the mock's trace before anything
    # counts it (the calibration goes straight to the mock: nothing in between to check).
    verifier = TraceVerifier(ctx.mock.traces, on_result) if through_gateway else None
    verification: Verification | None = None
    session = make_session(min(cfg.engine.max_inflight, _MAX_CONNECTIONS), timeout)
    try:
        client = chat_client(ctx, session, target, phase=name, timeout=timeout)
        if verifier is not None:
            verifier.start()
        sink = on_result if verifier is None else verifier.add
        run = await run_load_workers(spec, client, on_result=sink, stop=ctx.stop,
                                     **engine_share(cfg))  # fmt: skip
        if verifier is not None:
            verification = await verifier.close()
    finally:
        if verifier is not None:
            verifier.abort()  # cancelled: stop querying
        await session.close()
        samples = await watch.stop() if watch is not None else []
    report = PhaseReport(
        name=name,
        kind=kind,
        status=Status.PASSED,
        started_at=started_at,
        process=summarize(samples) if samples else None,
        params={"target": target.name, "rate": rate, "duration": duration, **params},
        **report_fields(run),
    )
    if samples:
        report.process_series = process_series(samples)
    if through_gateway and isinstance(plan := client.templates, RequestPlan):
        report.breakdown = breakdown(run.results, plan) or None
    if verification is not None and verifier is not None:
        verified(report, verification, forward_errors=verifier.forward_errors)
    if run.stopped:
        report.notes.append("stopped early: the run was interrupted")
    if cfg.shard.count > 1:
        report.notes.append(
            f"shard {cfg.shard.index} of {cfg.shard.count}: this replica sent 1/{cfg.shard.count}"
            " of the configured rate; Prometheus sums the replicas"
        )
    if through_gateway and ctx.self_report:
        reported = gateway_reported(before, await ctx.self_report())
        if reported:
            report.params["gateway_reported"] = reported
    return run, report


def verified(report: PhaseReport, verification: Verification, *, forward_errors: int) -> None:
    """What the mock's traces said of the phase's answers, into its report: the tally in
    `verification`, a note and a failing check for untraced or forged answers, an
    error when the control API failed (the answers after it went unverified)."""
    report.verification = verification.to_dict()
    note, check = verification.note(), verification.check()
    if note is not None:
        report.notes.append(note)
    if check is not None:
        report.checks.append(check)
    if forward_errors:
        report.notes.append(f"the result callback raised {forward_errors} times; results kept")
    if verification.error is not None:
        report.status = Status.ERROR
        report.error = (
            f"mock control API: answers could not be checked against the mock's trace"
            f" ({verification.unverified} unverified): {verification.error}"
        )


SERIES_POINTS = 600
"""At most this many process samples are kept per phase in `PhaseReport.process_series`."""


def process_series(samples: list[Sample]) -> list[list[float | None]]:
    """The gateway process over the phase as `[t_rel_s, rss_bytes, cpu_percent]` rows (for the
    HTML report's RSS plot), evenly thinned to at most `SERIES_POINTS` rows."""
    step = max(1, -(-len(samples) // SERIES_POINTS))
    t0 = samples[0].t
    rows = [
        [round(s.t - t0, 2), s.rss, None if s.cpu_percent is None else round(s.cpu_percent, 1)]
        for s in samples[::step]
    ]
    return rows


async def warm_up(ctx: PhaseContext, target: Target, *, rate: float, duration: float) -> None:
    """Unrecorded load at `target` (no progress, no metrics, no report): the gateway's first
    requests after a start pay for lazy imports, pools and caches, not for steady overhead."""
    timeout = ctx.config.gateway.timeout
    rate = shard_rate(ctx.config, rate)
    spec = load_spec(ctx, rate=rate, duration=duration, timeout=timeout, seed_offset=1)
    session = make_session(min(ctx.config.engine.max_inflight, _MAX_CONNECTIONS), timeout)
    try:
        client = chat_client(ctx, session, target, phase="warmup", timeout=timeout)
        await run_load_workers(spec, client, stop=ctx.stop, **engine_share(ctx.config))
    finally:
        await session.close()


def engine_share(config: Config) -> dict[str, int]:
    """How a load is shared: `engine.workers` processes (`soak.workers`) and the connections
    they split between them."""
    return {
        "workers": resolve(config.engine.workers),
        "connections": min(config.engine.max_inflight, _MAX_CONNECTIONS),
    }


def load_spec(
    ctx: PhaseContext, *, rate: float, duration: float, timeout: float, seed_offset: int = 0
) -> LoadSpec:
    """The engine's spec for `rate` over `duration` with the config's arrival shape and cap;
    in-flight requests get `timeout` plus a margin to drain."""
    engine = ctx.config.engine
    return LoadSpec(
        rate=rate,
        duration=duration,
        arrival=engine.arrival,
        seed=engine.seed + seed_offset,
        max_inflight=engine.max_inflight,
        drain_timeout=timeout + 5.0,
    )


def chat_client(
    ctx: PhaseContext,
    session: Any,
    target: Target,
    *,
    phase: str,
    timeout: float,
    stream: bool | None = None,
    max_tokens: int | None = None,
    workload: WorkloadConfig | None = None,
) -> ChatClient:
    """A client for `target` asking what the config's `request` block asks (unless overridden),
    its nonces unique to `phase`; with a non-default `workload` section (or `workload`), each
    request's body, model and key come from its plan (`request_plan`)."""
    request = ctx.config.request
    plan = request_plan(ctx, target, stream=stream, max_tokens=max_tokens, workload=workload)
    return ChatClient(
        session,
        target.url,
        api=target.api,
        model=target.model,
        headers=target.headers,
        stream=request.stream if stream is None else stream,
        max_tokens=request.max_tokens if max_tokens is None else max_tokens,
        prompt=request.prompt,
        run_id=nonce_run_id(ctx.run_id, phase),
        timeout=timeout,
        templates=plan,
    )


def request_plan(
    ctx: PhaseContext,
    target: Target,
    *,
    stream: bool | None = None,
    max_tokens: int | None = None,
    workload: WorkloadConfig | None = None,
) -> RequestPlan | None:
    """The seeded per-request plan of the workload for `target` (bodies encoded now, off the
    hot path), or None for the default workload (the `request` block's one body)."""
    w = ctx.config.workload if workload is None else workload
    if max_tokens is not None:  # the phase asks for its own answer length (streaming)
        w = replace(w, answer_tokens=None)
    if w.default:
        return None
    request = ctx.config.request
    plan = RequestPlan(
        w,
        api=target.api,
        stream=request.stream if stream is None else stream,
        model=target.model,
        prompt=request.prompt,
        max_tokens=request.max_tokens if max_tokens is None else max_tokens,
    )
    plan.warm()
    return plan


def answer_cap(config: Config) -> int | None:
    """The longest answer the workload asks for (the mock's `tokens` cap), or None when the
    workload's answers are the `request` block's."""
    dist = config.workload.answer_tokens
    if dist is None:
        return None
    top = {"fixed": dist.value, "histogram": max(dist.values or (0,))}.get(dist.kind, dist.max)
    return max(16, min(100_000, round(top)))


def nonce_run_id(run_id: str, phase: str) -> str:
    """The run part of this phase's nonces: sequence numbers restart every phase, so the phase
    name keeps one run's nonces unique (a mock trail never mixes two phases). Reduced to the
    nonce alphabet, at most 32 characters."""
    raw = re.sub(r"[^a-z0-9]+", "-", f"{run_id}-{phase}".lower())
    return raw[:32].strip("-") or "soak"


def gateway_reported(before: SelfReport | None, after: SelfReport | None) -> dict[str, Any]:
    """What the gateway says it added during the phase (its own histogram, this phase's share),
    shown next to what soak measured; empty when it reports nothing."""
    if after is None or after.overhead is None:
        return {}
    own = after.overhead.minus(before.overhead if before else None)
    if own.count <= 0:
        return {}
    out: dict[str, Any] = {"source": after.source, "requests": own.count, "overhead_mean": own.mean}
    for q in (0.5, 0.9, 0.99):
        out[f"overhead_p{round(q * 100)}"] = own.quantile(q)
    return out
