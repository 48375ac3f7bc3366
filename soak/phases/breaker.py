"""Breaker: fault the primary provider under load; its breaker must open, then close again.

One open-loop load of `duration`: healthy for `lead` seconds, then the primary answers every
request with HTTP 500 for `fault` seconds (injected through the mock's control API with a TTL,
and cleared in a `finally` whatever happens), then healthy again while the load goes on. The
fallback stays healthy throughout.

Two sources, side by side: *observed* (black-box, `soak.breaker`: the share of client requests
that still attempted a provider, from the mock's traces) and *reported* (the gateway's own
self-report sampled every `scrape_interval`, e.g. LiteLLM's `litellm_deployment_state`; "not
reported" for kinds that have none). Checks: the primary reads OPEN within `open_within` of
the fault, clients keep succeeding, the fallback is tried whenever it is needed, and the
primary reads CLOSED within `recover_within` of the fault's end.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

from soak.breaker import (
    STATE_NAMES,
    BreakerObservation,
    ClientRequest,
    WindowRule,
    compress,
    eligible,
    observe,
)
from soak.config.fields import Section
from soak.phases.base import PhaseContext, measure, rate_shape, set_mock_latency
from soak.phases.spec import PhaseSpec, report_hook
from soak.phases.trails import client_trails, faulted
from soak.results import Result
from soak.summary import PhaseDetails, PhaseReport
from soak.verdicts import at_least, below, settle


@dataclass(frozen=True, slots=True)
class BreakerPhase:
    """One load of `duration`: healthy for `lead`, the primary faulted for `fault`, then healthy
    again while the primary's breaker should close."""

    rate: float
    duration: float
    latency: float
    lead: float
    """Healthy seconds before the fault (the breaker reads CLOSED first)."""
    fault: float
    """Seconds the primary answers every request with HTTP 500."""
    window: float
    """Sliding window of the observed breaker (seconds of client requests)."""
    closed_share: float
    """Share of requests still trying the primary at or above which it reads CLOSED."""
    scrape_interval: float
    """How often the gateway's self-reported breaker state is read."""


@dataclass(frozen=True, slots=True)
class BreakerSlo:
    success_ratio: float
    """Clients must not see the fault: share of successful requests over the whole phase."""
    open_within: float
    """Seconds from the fault's start by which the primary must read OPEN."""
    recover_within: float
    """Seconds from the fault's end by which the primary must read CLOSED again."""


@dataclass(slots=True)
class BreakerDetails(PhaseDetails):
    """The breaker phase's record: the fault window and each provider's state timeline from
    both sources (seconds from the phase's first send)."""

    fault_start: float | None = None
    fault_end: float | None = None
    observed: dict[str, dict[str, Any]] = field(default_factory=dict)
    """Provider → `observation_dict`: final state, timeline, transitions, open/recover times."""
    reported: dict[str, dict[str, Any]] | str | None = None
    """Provider → `reported_dict` of the gateway's self-report, or why there is none."""
    client_errors: dict[str, int] = field(default_factory=dict)
    """Client-visible errors before / during / after the fault."""

    def timelines(self) -> dict[str, Any]:
        """Source (`observed`, `reported`) → provider → record with a `timeline`."""
        return {"observed": self.observed, "reported": self.reported}


def parse_breaker(s: Section) -> BreakerPhase:
    s.only("rate", "duration", "latency", "lead", "fault", "window", "closed_share",
           "scrape_interval")  # fmt: skip
    phase = BreakerPhase(
        **rate_shape(s),
        lead=s.duration("lead"),
        fault=s.duration("fault", positive=True),
        window=s.duration("window", positive=True),
        closed_share=s.number("closed_share", positive=True, at_most=1.0),
        scrape_interval=s.duration("scrape_interval", positive=True, at_least=0.1),
    )
    if phase.lead + phase.fault >= phase.duration:
        s.fail(
            "fault",
            f"lead + fault ({phase.lead + phase.fault:g}s) must end before duration "
            f"({phase.duration:g}s)",
            "the load must go on after the fault so the breaker can be seen to close",
        )
    return phase


def parse_breaker_slo(s: Section) -> BreakerSlo:
    s.only("success_ratio", "open_within", "recover_within")
    return BreakerSlo(
        success_ratio=s.number("success_ratio", at_most=1.0),
        open_within=s.duration("open_within", positive=True),
        recover_within=s.duration("recover_within", positive=True),
    )


async def _pause(ctx: PhaseContext, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ctx.stop.wait(), max(0.0, seconds))


def observation_dict(obs: BreakerObservation, t0: float) -> dict[str, Any]:
    """A JSON-safe observation, times relative to `t0` (the phase start)."""
    return {
        "timeline": [[round(t - t0, 3), STATE_NAMES[s]] for t, s in obs.timeline],
        "transitions": obs.transitions,
        "time_to_open": obs.time_to_open,
        "time_to_recover": obs.time_to_recover,
        "final": None if obs.final_state is None else STATE_NAMES[obs.final_state],
    }


def reported_dict(samples: Sequence[tuple[float, dict[str, int] | None]], t0: float) -> Any:
    """Per provider, the compressed timeline of the gateway's own breaker state."""
    if not any(states for _, states in samples):
        return "not reported"
    providers = sorted({p for _, states in samples if states for p in states})
    out = {}
    for provider in providers:
        points = [(t, states.get(provider) if states else None) for t, states in samples]
        timeline = compress(points)
        out[provider] = {
            "timeline": [[round(t - t0, 3), STATE_NAMES[s]] for t, s in timeline],
            "transitions": max(0, len(timeline) - 1),
            "final": STATE_NAMES[timeline[-1][1]] if timeline else None,
        }
    return out


async def run_breaker(ctx: PhaseContext) -> PhaseReport:
    phase, slo = ctx.config.phases.breaker, ctx.config.slo.breaker
    primary, fallback = ctx.config.mock.primary, ctx.config.mock.fallback
    await set_mock_latency(ctx, phase.latency)
    marks: dict[str, float] = {}
    reported: list[tuple[float, dict[str, int] | None]] = []

    loading = asyncio.Event()
    forward = ctx.observe

    def first_result(result: Result, name: str) -> None:
        loading.set()
        if forward is not None:
            forward(result, name)

    async def fault_window() -> None:
        # the lead counts from the load's first answer, not from a slow pre-phase scrape
        while not (loading.is_set() or ctx.stop.is_set()):
            await asyncio.sleep(0.02)
        await _pause(ctx, phase.lead)
        if ctx.stop.is_set():
            return
        async with faulted(ctx, primary, phase.fault):
            marks["fault_start"] = time.time()
            await _pause(ctx, phase.fault)
        marks["fault_end"] = time.time()

    async def sample_reported() -> None:
        while ctx.self_report is not None:
            try:
                report = await ctx.self_report()
            except Exception:  # a scrape that breaks says nothing; the phase goes on
                report = None
            reported.append((time.time(), dict(report.breaker) if report else None))
            await asyncio.sleep(phase.scrape_interval)

    tasks = [asyncio.create_task(fault_window()), asyncio.create_task(sample_reported())]
    try:
        run, report = await measure(
            replace(ctx, observe=first_result),
            name="breaker",
            kind="breaker",
            target=ctx.gateway,
            rate=phase.rate,
            duration=phase.duration,
            timeout=ctx.config.gateway.timeout,
            params={
                "latency": phase.latency,
                "lead": phase.lead,
                "fault": phase.fault,
                "window": phase.window,
                "provider": primary,
            },
        )
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task  # the fault window's `finally` clears the fault
    if "fault_start" in marks and "fault_end" not in marks:
        marks["fault_end"] = time.time()
    requests, trails = await client_trails(ctx, run.results)
    started = min((r.t for r in requests), default=report.started_at)  # the first send
    start, end = marks.get("fault_start"), marks.get("fault_end")
    rule = WindowRule(window=phase.window, high=phase.closed_share)
    obs = observe(primary, requests, trails, fault_start=start, fault_end=end, rule=rule)
    fb = observe(fallback, requests, trails, served_before=(primary,), rule=rule)
    report.details = BreakerDetails(
        fault_start=None if start is None else round(start - started, 3),
        fault_end=None if end is None else round(end - started, 3),
        observed={primary: observation_dict(obs, started), fallback: observation_dict(fb, started)},
        reported=reported_dict(reported, started),
        client_errors=_errors_by_period(run.results, requests, start, end),
    )
    needed = eligible(requests, trails, (primary,))
    if start is not None and end is not None:
        needed = [(t, n) for t, n in needed if start <= t < end]
    tried = sum(1 for _, n in needed if any(a.provider == fallback for a in trails.get(n, ())))
    report.checks += [
        below("primary time to open", obs.time_to_open, slo.open_within),
        at_least(
            "fallback tried when needed",
            tried / len(needed) if needed else None,
            phase.closed_share,
        ),
        at_least("success ratio", report.success_ratio, slo.success_ratio),
        below("primary time to recover", obs.time_to_recover, slo.recover_within),
    ]
    if start is None:
        report.notes.append("the fault was never injected: the run stopped before it")
    return settle(report)


def _errors_by_period(
    results: Sequence[Result],
    requests: Sequence[ClientRequest],
    start: float | None,
    end: float | None,
) -> dict[str, int]:
    """Client-visible failures before, during and after the fault (by send time)."""
    sent = {r.nonce: r.t for r in requests}
    out = {"before": 0, "during": 0, "after": 0}
    for result in results:
        if result.ok:
            continue
        t = sent.get(result.nonce or "")
        if start is None or t is None or t < start:
            out["before"] += 1
        elif end is None or t < end:
            out["during"] += 1
        else:
            out["after"] += 1
    return out


def record_breaker(report: PhaseReport, metrics: Any, target: str) -> None:
    """Replay the observed and reported timelines into the breaker-state gauges, so each
    state change counts one transition."""
    if isinstance(report.details, BreakerDetails):
        metrics.replay_breakers(report.details.timelines(), target=target)


PHASE = PhaseSpec(
    name="breaker",
    reference_interval=3600,  # hourly in the committed rule files
    order=50,
    run=run_breaker,
    settings=parse_breaker,
    slo=parse_breaker_slo,
    in_error_budget=False,  # it faults the primary on purpose
    record=record_breaker,
    markdown=report_hook("soak.reports.resilience_md", "breaker_section"),
    details=BreakerDetails,
    figure=report_hook("soak.reports.phase_plots", "breaker_figure"),
)
