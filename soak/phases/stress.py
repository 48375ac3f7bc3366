"""Stress: rate × a long mock latency in flight, in rounds with an idle gap (the seed's two).

Each round must reach the SLO's success ratio (100% by default). The gateway may be restarted
first (the seed restarts to clear connection pools left over from the overhead phase).
"""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass

from soak.alerting import BURN_ALERTS, TARGET, RuleWriter, pct, unless_fired
from soak.config.fields import Section
from soak.phases.base import PhaseContext, measure, rate_shape, set_mock_latency
from soak.phases.spec import PhaseSpec, report_hook, round_name
from soak.promql import agg, gated, num, ratio
from soak.summary import PhaseReport, Status
from soak.verdicts import at_least, settle


@dataclass(frozen=True, slots=True)
class StressPhase:
    """rate × latency requests in flight, `rounds` times with an idle `gap` between."""

    rate: float
    duration: float
    latency: float
    rounds: int
    gap: float
    timeout: float
    """Per-request client timeout in this phase."""

    @property
    def in_flight(self) -> float:
        """Expected concurrent requests (the seed's ~rate × latency)."""
        return self.rate * self.latency


@dataclass(frozen=True, slots=True)
class StressSlo:
    success_ratio: float
    """Minimum share of successful requests in every stress round (1.0 = 100%)."""


def parse_stress(s: Section) -> StressPhase:
    s.only("rate", "duration", "latency", "rounds", "gap", "timeout")
    phase = StressPhase(
        **rate_shape(s),
        rounds=s.integer("rounds", minimum=1, maximum=100),
        gap=s.duration("gap"),
        timeout=s.duration("timeout", positive=True),
    )
    load, took = phase.rate * phase.duration, phase.duration + phase.gap
    s.load_bound("rounds", requests=load * phase.rounds, seconds=took * phase.rounds)
    return phase


def parse_stress_slo(s: Section) -> StressSlo:
    s.only("success_ratio")
    return StressSlo(success_ratio=s.number("success_ratio", at_most=1.0))


def stress_alerts(r: RuleWriter, slo: StressSlo, *, phase: str, window: str, **_: object) -> None:
    """Any round's failures beyond the success SLO (one run of a few rounds: no traffic gate
    beyond one request), unless the error budget paged in the window: the gateway failing all
    traffic is that page's incident, not a stress problem."""
    need, sel = slo.success_ratio, f'phase="{phase}"'
    errors = agg("increase", "soak_requests_total", f'{sel}, outcome!="ok"', window)
    total = agg("increase", "soak_requests_total", sel, window)
    r.alert("SoakStressRequestsFailed",
            gated(f"{ratio(errors, total)}\n> {num(round(1 - need, 9))}", total, 1)
            + unless_fired(BURN_ALERTS, window), "5m",
            "warning", f"Requests failed under stress on {TARGET}",
            f"{{{{ $value | humanizePercentage }}}} of stress-phase requests failed in the "
            f"last {window}; the stress SLO requires {pct(need)} success.")  # fmt: skip


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
        name = round_name("stress", round_no)
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


PHASE = PhaseSpec(
    name="stress",
    reference_interval=3600,  # hourly in the committed rule files
    order=30,
    run=run_stress,
    settings=parse_stress,
    slo=parse_stress_slo,
    in_error_budget=False,  # it provokes errors on purpose
    alerts=stress_alerts,
    markdown=report_hook("soak.reports.markdown", "stress_section"),
)
