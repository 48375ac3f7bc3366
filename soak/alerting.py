"""How one alert rule is written: shared labels and annotations, exact latency counting, and
the tier alerts of a phase judged on normal traffic. Phase modules write their own alerts with
these (`PhaseSpec.alerts`); `soak.rules` assembles the file.

Every alert has `for:`, a summary, a description and a runbook_url (an anchor in
docs/alerts.md). Latency thresholds are counted exactly: requests above a threshold =
`_count - _bucket{le=threshold}`, which is why every threshold is a bucket bound.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from soak.promql import agg, count_above, duration, gated, num, ratio, seconds
from soak.promql import percent_text as pct
from soak.promql import seconds_text as ms

LEVELS = (("target", "warning"), ("acceptable", "critical"))
"""Tier → severity: missing the target tier warns, missing the acceptable tier pages."""
TARGET = "{{ $labels.target }}"
PHASE = "{{ $labels.phase }}"
LATENCY_TIERS = ("p50", "p95", "p99")
"""Latency tiers (`slo.tiers`) a judged phase's client latency is held to."""

BURN_ALERTS = ("SoakErrorBudgetFastBurn", "SoakErrorBudgetSlowBurn")
"""The paging burn-rate alerts (`soak.rules`): requests failing at the gateway, whatever the
phase. They explain a phase's failed requests in the same window."""

__all__ = [
    "BURN_ALERTS",
    "LEVELS",
    "PHASE",
    "TARGET",
    "AlertOptions",
    "RuleWriter",
    "judged_alerts",
    "ms",
    "pct",
    "unless_fired",
]


@dataclass(frozen=True, slots=True)
class AlertOptions:
    """Knobs that are not SLO numbers."""

    job: str = "soak"
    """Prometheus `job` label of the soak daemon's scrape (for up / absent)."""
    min_requests: int = 100
    """Minimum requests in a window before a ratio or latency alert may fire."""
    memory_window: str = "6h"
    breaker_open_for: str = "15m"
    for_override: str | None = None
    """Every alert's `for:` replaced by this (end-to-end tests that cannot wait minutes)."""
    time_scale: float = 1.0
    """Compressed time, for a game day that replays hours in minutes: every nominal duration
    of the rules (`for:`, the burn-rate windows and margins, the memory and staleness windows,
    `memory_window`, `breaker_open_for`, the 1 h look-backs) is divided by it. Schedule
    intervals are not: they are the real ones of the config the rules are for (a game day
    that runs its plans every 30 s instead of 15 min passes 30). 1 in production."""

    def __post_init__(self) -> None:
        scale = self.time_scale
        if isinstance(scale, bool) or not isinstance(scale, int | float):
            raise ValueError(f"time_scale: expected a number, got {scale!r}")
        if not math.isfinite(scale) or scale < 1:
            raise ValueError(f"time_scale: expected a finite number >= 1, got {scale!r}")

    def scaled(self, nominal: str | float) -> float:
        """Seconds of a nominal duration ("5m", or seconds) in compressed time."""
        return (seconds(nominal) if isinstance(nominal, str) else float(nominal)) / self.time_scale

    def span(self, nominal: str | float) -> str:
        """A nominal duration in compressed time as a PromQL duration, at least 1s: "1h" at
        time_scale 30 is "2m"; at time_scale 1 the nominal spelling's value, unchanged."""
        return duration(max(1.0, self.scaled(nominal)))


class RuleWriter:
    """Accumulates alert rules with the shared labels and annotations."""

    def __init__(self, runbook_base: str, options: AlertOptions) -> None:
        self.runbook_base = runbook_base.rstrip("#")
        self.options = options
        self.rules: list[dict[str, Any]] = []

    def alert(
        self, name: str, expr: str, for_: str, severity: str, summary: str, description: str,
        **labels: str,
    ) -> None:  # fmt: skip
        for_ = self.options.for_override or self.options.span(for_)
        self.rules.append({
            "alert": name, "expr": expr, "for": for_,
            "labels": {"severity": severity, **labels},
            "annotations": {"summary": summary, "description": description,
                            "runbook_url": f"{self.runbook_base}#{name.lower()}"},
        })  # fmt: skip

    def latency(
        self, name: str, metric: str, phase: str, window: str, stat: str, limit: float,
        severity: str, what: str, **labels: str,
    ) -> None:  # fmt: skip
        """Mean via _sum/_count; a percentile via the exact share of observations above
        `limit`; max: any observation above it."""
        sel = f'phase="{phase}"'
        above, count = count_above(metric, sel, limit, window)
        if stat == "mean":
            expr = f"{ratio(agg('increase', f'{metric}_sum', sel, window), count)}\n> {num(limit)}"
            desc = (f"Mean {what} over the last {window} of the {phase} phase is "
                    f"{{{{ $value | humanizeDuration }}}} (threshold {ms(limit)}).")  # fmt: skip
        elif stat == "max":
            expr = f"{above}\n> 0"
            desc = (f"{{{{ $value | humanize }}}} {phase}-phase requests in the last {window} had "
                    f"{what} above the {ms(limit)} maximum.")  # fmt: skip
        elif stat.startswith("p") and 0 < float(stat[1:]) < 100:
            allowed = round(1 - float(stat[1:]) / 100, 6)
            expr = f"{ratio(above, count)}\n> {num(allowed)}"
            desc = (f"{{{{ $value | humanizePercentage }}}} of {phase}-phase requests in the "
                    f"last {window} had {what} above {ms(limit)}; {stat} < {ms(limit)} allows at "
                    f"most {pct(allowed)}.")  # fmt: skip
        else:
            raise ValueError(f"slo: statistic {stat!r} must be mean, max or pNN (0 < NN < 100)")
        summary = f"{what.capitalize()} {stat} above {ms(limit)} on {TARGET} ({phase})"
        self.alert(name, gated(expr, count, self.options.min_requests), "5m", severity, summary,
                   desc, statistic=stat, phase=phase, **labels)  # fmt: skip


def unless_fired(names: tuple[str, ...] | list[str], window: str) -> str:
    """A clause that keeps an alert quiet while any of `names` fired for the same target
    within `window`. An Alertmanager inhibition holds only while its source fires; an alert
    counting the same failures over a longer window outlives it and would notify the incident
    again once it is over (game day, scenario 3: the stress alert after the error budget page).
    """
    return ('\nunless on (target)\nmax_over_time(ALERTS{alertname=~"'
            f'{"|".join(names)}", alertstate="firing"}}[{window}])')  # fmt: skip


def judged_alerts(
    r: RuleWriter, slo: object, *, phase: str, window: str, tiers: Mapping[str, Any]
) -> None:
    """A phase of normal traffic held to the tiers: success ratio and client latency
    percentiles, a warning below the target tier, a page below the acceptable one."""
    sel, n = f'phase="{phase}"', r.options.min_requests
    ok = agg("increase", "soak_requests_total", f'{sel}, outcome="ok"', window)
    total = agg("increase", "soak_requests_total", sel, window)
    success = tiers.get("success_ratio")
    for level, severity in LEVELS:
        if success is not None:
            need = getattr(success, level)
            r.alert("SoakSuccessRatioLow",
                    gated(f"{ratio(ok, total)}\n< {num(need)}", total, n)
                    + unless_fired(BURN_ALERTS, window), "5m", severity,
                    f"Success ratio below {pct(need)} on {TARGET} ({phase})",
                    f"{phase} phase success ratio over the last {window} is "
                    f"{{{{ $value | humanizePercentage }}}}, below the {level} tier "
                    f"({pct(need)}).", tier=level, phase=phase)  # fmt: skip
    for stat in (s for s in LATENCY_TIERS if s in tiers):
        for level, severity in LEVELS:
            r.latency("SoakLatencyHigh", "soak_request_duration_seconds", phase, window, stat,
                      getattr(tiers[stat], level), severity, "latency", tier=level)  # fmt: skip
