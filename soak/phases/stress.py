"""Stress: rate × a long mock latency in flight, in rounds with an idle gap (the seed's two).

Each round must reach the SLO's success ratio (100% by default). The gateway may be restarted
first (the seed restarts to clear connection pools left over from the overhead phase).
"""

from __future__ import annotations

import asyncio
import contextlib

from soak.phases.base import PhaseContext, measure, set_mock_latency
from soak.summary import PhaseReport, Status
from soak.verdicts import at_least, settle


async def run_stress(ctx: PhaseContext) -> list[PhaseReport]:
    """One report per round, named stress-1, stress-2, ..."""
    phase = ctx.config.phases.stress
    managed = ctx.config.gateway.managed
    if managed is not None and managed.restart_between_phases and ctx.restart_gateway:
        await ctx.restart_gateway()
    await set_mock_latency(ctx, phase.latency)
    reports: list[PhaseReport] = []
    for round_no in range(1, phase.rounds + 1):
        if round_no > 1 and phase.gap > 0:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(ctx.stop.wait(), phase.gap)
        name = f"stress-{round_no}"
        if ctx.stop.is_set():
            reports.append(PhaseReport(name=name, kind="stress", status=Status.SKIPPED))
            continue
        _, report = await measure(
            ctx,
            name=name,
            kind="stress",
            target=ctx.gateway,
            rate=phase.rate,
            duration=phase.duration,
            timeout=phase.timeout,
            params={
                "latency": phase.latency,
                "concurrency": round(phase.rate * phase.latency),
                "round": round_no,
                "gap": phase.gap,
            },
        )
        report.checks.append(
            at_least("success ratio", report.success_ratio, ctx.config.slo.stress.success_ratio)
        )
        reports.append(settle(report))
    return reports
