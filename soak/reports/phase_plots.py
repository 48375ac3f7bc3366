"""The phases' own plots in report.html, each a phase's `figure` hook (`PhaseSpec.figure`):
the circuit breaker timeline, the capacity curve and overhead against payload size.

Each takes one report of its phase and gives `(plot id, inline SVG, caption)`, or None when
the report has nothing to draw; it reads only the phase's typed details record, so a report
parsed back from JSON draws the same.
"""

from __future__ import annotations

from soak.phases.breaker import BreakerDetails
from soak.phases.capacity import CapacityDetails
from soak.phases.payload import PayloadDetails
from soak.reports.formatting import is_number
from soak.reports.svgplot import Series, line_plot, state_timeline
from soak.summary import PhaseReport

Figure = tuple[str, str, str]
"""(plot id, inline SVG, caption)."""


def capacity_plot(phase: PhaseReport) -> str | None:
    """The capacity curve: overhead p50 and p99 (ms) against the rate tried, in rate order."""
    if not isinstance(phase.details, CapacityDetails) or not phase.details.steps:
        return None
    steps = sorted(phase.details.steps, key=lambda s: s["rate"])
    series = []
    for stat in ("overhead_p50", "overhead_p99"):
        points = [(s["rate"], s[stat] * 1e3) for s in steps if s.get(stat) is not None]
        labels = [
            f"{x:g} req/s: {y:.2f} ms, {s['success']:.1%} ok"
            for (x, y), s in zip(points, [s for s in steps if s.get(stat) is not None], strict=True)
        ]
        series.append(Series(stat.replace("overhead_", "overhead "), points, True, labels))
    knee = phase.details.knee
    title = "Capacity curve" + (f" (knee {knee:g} req/s)" if knee else " (no rate held the SLO)")
    return line_plot(series, title=title, x_label="rate tried (req/s)",
                     y_label="per-request overhead (ms)")  # fmt: skip


def breaker_plot(phase: PhaseReport) -> str | None:
    """State bands per provider and source, from the breaker phase's details."""
    details = phase.details
    if not isinstance(details, BreakerDetails):
        return None
    observed, reported = details.observed, details.reported
    rows: list[tuple[str, list[tuple[float, str]]]] = []
    for provider in sorted(set(observed) | set(reported if isinstance(reported, dict) else ())):
        for source, data in (("observed", observed), ("reported", reported)):
            entry = data.get(provider) if isinstance(data, dict) else None
            if isinstance(entry, dict):
                timeline = [(float(t), str(s)) for t, s in entry.get("timeline") or []]
                rows.append((f"{provider} {source}", timeline))
    if not isinstance(reported, dict):
        rows.append((f"reported: {reported or 'none'}", []))
    start, end = details.fault_start, details.fault_end
    window = (float(start), float(end)) if is_number(start) and is_number(end) else None
    return state_timeline(rows, title=f"Circuit breaker timeline — {phase.name}",
                          end=max(phase.duration_s, window[1] if window else 0.0),
                          window=window, x_label="time (UTC)",
                          t0=phase.started_at or None)  # fmt: skip


def payload_plot(phase: PhaseReport) -> str | None:
    """report.html: overhead p50 / p99 through the gateway and the floor's p50 (ms) against the
    prompt size (KB), over the prompt steps; nginx-like gateways give lines parallel to the
    floor."""
    if not isinstance(phase.details, PayloadDetails) or not phase.details.steps:
        return None
    steps = phase.details.steps
    first = steps[0]["answer_tokens"]
    rows = [s for s in steps if s["answer_tokens"] == first]
    rows.sort(key=lambda s: s["prompt_bytes"])
    series = []
    for key, name in (("p50", "gateway p50"), ("p99", "gateway p99"), ("floor_p50", "floor p50")):
        points = [(s["prompt_bytes"] / 1024, s[key] * 1e3) for s in rows if s.get(key) is not None]
        labels = [f"{x:g} KB: {y:.2f} ms" for x, y in points]
        if points:
            series.append(Series(name, points, True, labels))
    slope = phase.details.slope_s_per_100kb
    title = "Overhead against prompt size" + (
        f" (slope {slope * 1e3:.2f} ms per 100 KB)" if slope is not None else "")
    return line_plot(series, title=title, x_label="prompt (KB)",
                     y_label="per-request overhead (ms)") if series else None  # fmt: skip


def breaker_figure(phase: PhaseReport) -> Figure | None:
    svg = breaker_plot(phase)
    caption = ("Breaker state per provider: observed from the mock's traces and reported by the"
               " gateway; the shaded span is the injected fault.")  # fmt: skip
    return None if svg is None else (f"breaker-{phase.name}", svg, caption)


def capacity_figure(phase: PhaseReport) -> Figure | None:
    svg = capacity_plot(phase)
    caption = ("Capacity search: per-request overhead p50 / p99 at each rate tried; the dashed"
               " line is the knee.")  # fmt: skip
    return None if svg is None else ("capacity", svg, caption)


def payload_figure(phase: PhaseReport) -> Figure | None:
    svg = payload_plot(phase)
    caption = ("Overhead against payload size: per-request overhead through the gateway and"
               " straight to the mock (the tester's own floor) at each prompt size.")  # fmt: skip
    return None if svg is None else ("payload", svg, caption)
