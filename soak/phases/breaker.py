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
from collections.abc import AsyncIterator, Sequence
from dataclasses import replace
from typing import Any

from soak.breaker import (
    STATE_NAMES,
    BreakerObservation,
    ClientRequest,
    WindowRule,
    compress,
    eligible,
    observe,
    parse_trails,
)
from soak.breaker import Attempt as TrailAttempt
from soak.phases.base import PhaseContext, measure, set_mock_latency
from soak.results import Result
from soak.summary import PhaseReport
from soak.verdicts import at_least, below, settle

FAULT = {"error_rate": 1.0, "status_mix": {"500": 1}}
"""Every request to the faulted provider answers HTTP 500 at once."""
TTL_MARGIN = 10.0
"""Seconds an injected fault outlives its planned end if soak dies before clearing it."""


@contextlib.asynccontextmanager
async def faulted(ctx: PhaseContext, provider: str, ttl: float) -> AsyncIterator[None]:
    """The provider fails every request inside the block; cleared on the way out, TTL-bounded."""
    await ctx.mock.inject_fault(provider, FAULT, ttl=min(3600.0, ttl + TTL_MARGIN))
    try:
        yield
    finally:
        await asyncio.shield(ctx.mock.clear_faults(provider))


async def _pause(ctx: PhaseContext, seconds: float) -> None:
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(ctx.stop.wait(), max(0.0, seconds))


CLOCK_TOLERANCE = 0.25
"""Seconds an attempt may seem to arrive before its request was sent (tester and mock clocks;
the same clock for a soak-started mock). Older attempts under the same nonce are left out:
nonces (`run:seq`) repeat in every phase of a run, so a trail would otherwise mix phases."""


async def client_trails(
    ctx: PhaseContext, results: Sequence[Result]
) -> tuple[list[ClientRequest], dict[str, list[TrailAttempt]]]:
    """Client requests on the wall clock (sent time) and their attempt trails from the mock,
    each trail holding only the attempts that came after its request was sent."""
    offset = time.time() - time.perf_counter()  # the engine's clock is perf_counter
    requests = [ClientRequest(r.nonce, r.sent + offset) for r in results if r.nonce]
    trails = parse_trails(await ctx.mock.traces([r.nonce for r in requests]))
    for req in requests:
        trail = trails.get(req.nonce)
        if trail:
            trails[req.nonce] = [a for a in trail if a.arrival >= req.t - CLOCK_TOLERANCE]
    return requests, trails


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
    report.details.update(
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
