"""SLO checks: turn measured figures and configured thresholds into `Check` lines.

Thresholds are upper bounds for latencies (`value < threshold`) and lower bounds for ratios
(`value >= threshold`), as in the seeds. A missing value (nothing measured) fails its check.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import replace

from soak.config.schema import HIGHER_IS_BETTER, Tier
from soak.summary import Check, LatencySummary, PhaseReport, Status


def below(name: str, value: float | None, threshold: float, unit: str = "s") -> Check:
    """`value < threshold`; None fails."""
    passed = value is not None and value < threshold
    return Check(name=name, value=value, op="<", threshold=threshold, unit=unit, passed=passed)


def at_least(name: str, value: float | None, threshold: float, unit: str = "ratio") -> Check:
    """`value >= threshold`; None fails."""
    passed = value is not None and value >= threshold
    return Check(name=name, value=value, op=">=", threshold=threshold, unit=unit, passed=passed)


def latency_checks(
    prefix: str, summary: LatencySummary | None, thresholds: Mapping[str, float | None]
) -> list[Check]:
    """One check per configured statistic (mean, p50, ...) of a latency distribution."""
    checks = []
    for stat, limit in thresholds.items():
        if limit is None:
            continue
        value = summary.get(stat) if summary is not None and summary.count else None
        checks.append(below(f"{prefix} {stat}", value, limit))
    return checks


def settle(report: PhaseReport) -> PhaseReport:
    """Set the phase status from its checks unless it already errored or is a baseline."""
    if report.status in (Status.ERROR, Status.BASELINE, Status.SKIPPED):
        return report
    report.status = Status.PASSED if all(c.passed for c in report.checks) else Status.FAILED
    return report


def tier_of(metric: str, value: float | None, tiers: Mapping[str, Tier]) -> str | None:
    """`target`, `acceptable` or `warning` for `value` of `metric`; None without a tier or value."""
    tier = tiers.get(metric)
    if tier is None or value is None:
        return None
    if metric in HIGHER_IS_BETTER:
        return (
            "target"
            if value >= tier.target
            else "acceptable"
            if value >= tier.acceptable
            else "warning"
        )
    return (
        "target" if value < tier.target else "acceptable" if value < tier.acceptable else "warning"
    )


def tiered(check: Check, metric: str, tiers: Mapping[str, Tier]) -> Check:
    """`check` with the seed's tier of its value: tiers grade a figure, never fail a phase."""
    return replace(check, tier=tier_of(metric, check.value, tiers))
