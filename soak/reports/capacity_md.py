"""Markdown section of the capacity search: the knee, what stopped it, and the curve.

Reads only the capacity `PhaseReport` and its `CapacityDetails` (soak.phases.capacity), so a
report parsed back from JSON renders the same; anything missing shows as "—".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from soak.phases.capacity import CapacityDetails
from soak.reports.formatting import NA, fmt_num, fmt_pct, fmt_time, is_number, md_table, one_line
from soak.summary import PhaseReport

CURVE_HEADERS = (
    "rate (req/s)",
    "sent (req/s)",
    "ok (req/s)",
    "success",
    "overhead p50",
    "overhead p99",
    "latency p50",
    "latency p99",
    "drops",
    "generator",
    "verdict",
)


def _ms(value: Any) -> str:
    return fmt_time(value, "ms") if is_number(value) else NA


def curve_rows(steps: list[dict[str, Any]]) -> list[list[str]]:
    """One row per step, in rate order (bisection steps slot in between)."""
    rows = []
    for s in sorted(steps, key=lambda s: s.get("rate") or 0.0):
        verdict = "held" if s.get("held") else f"✗ {s.get('stop') or '?'}"
        rows.append(
            [
                fmt_num(s.get("rate"), 1),
                fmt_num(s.get("achieved"), 1),
                fmt_num(s.get("throughput"), 1),
                fmt_pct(s.get("success")),
                _ms(s.get("overhead_p50")),
                _ms(s.get("overhead_p99")),
                _ms(s.get("latency_p50")),
                _ms(s.get("latency_p99")),
                str(s.get("drops", NA)),
                "ok" if s.get("trusted", True) else "saturated",
                verdict,
            ]
        )
    return rows


def phase_lines(phase: PhaseReport) -> list[str]:
    d = phase.record(CapacityDetails)
    knee = d.knee
    knee_text = f"**{fmt_num(knee, 1)} req/s**" if is_number(knee) else "**none** (no rate held)"
    lines = [
        f"Knee (highest rate that held the SLO): {knee_text}. "
        f"Stopped by: **{d.stopped_by or NA}**: {one_line(d.stopped_because or NA)}.",
        "",
    ]
    if d.reasons:
        lines += [f"- {one_line(r)}" for r in d.reasons] + [""]
    steps = d.steps
    if steps:
        lines += [md_table(CURVE_HEADERS, curve_rows(steps)), ""]
    lines.append(f"{len(steps)} steps ({d.bisects} bisecting) in {fmt_num(d.elapsed, 1)} s.")
    return [*lines, ""]


def capacity_section(reports: Sequence[PhaseReport]) -> list[str]:
    """`## Capacity` with one block per capacity phase run (`PhaseSpec.markdown`); nothing
    when none has its details."""
    phases = [p for p in reports if p.details is not None]
    if not phases:
        return []
    lines = ["## Capacity", ""]
    for phase in phases:
        lines += phase_lines(phase)
    return lines
