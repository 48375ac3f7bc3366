"""Plots made of panels, each on its own scale: bars per statistic, and the comparison's
confidence intervals against their tolerances.

A p50 of 0.8 ms and a p99 limit of 100 ms cannot share one linear axis without squashing the
small one, so each statistic gets a panel with its own axis, its own limit line (named in the
panel's header, where no bar label can cover it) and its values written over the bars; a value
over its limit is drawn hatched and marked. Every label has a place of its own (header, tick
column, above or below its bar), so no two texts overlap; tests/test_reports_chromium.py checks
that in a real browser.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from html import escape

from soak.reports.svgplot import PALETTE, W, _legend, fmt_tick, nice_ticks, text_width

PANEL_H = 300
HEAD = 62
"""Room above the panels: the plot title, then each panel's name and limit."""
FOOT = 46
"""Room below: the legend."""
GUTTER = 38
"""A panel's own tick column."""


@dataclass(slots=True)
class Bar:
    """One bar of a panel: its series, value (None: not measured) and whether it breaches the
    panel's limit where that is a verdict (`failed`) or just over it (`over`)."""

    series: str
    value: float | None
    failed: bool = False
    over: bool = False


@dataclass(slots=True)
class Panel:
    name: str
    bars: list[Bar] = field(default_factory=list)
    limit: float | None = None
    limit_label: str = ""


def _scale(values: list[float], limit: float | None) -> list[float]:
    """Ticks covering the values, the limit and zero, with headroom for the labels."""
    lo = min([0.0, *values])
    hi = max([0.0, *values, *([limit] if limit is not None else [])])
    hi = hi * 1.18 if hi > 0 else 1.0
    lo = lo * 1.25 if lo < 0 else 0.0
    return nice_ticks(lo, hi, 4)


def panel_plot(
    panels: Sequence[Panel],
    *,
    title: str,
    series: Sequence[str],
    value_fmt: Callable[[float], str],
    unit: str,
) -> str:
    """One panel per statistic, side by side; bars of `series` in each."""
    height = PANEL_H
    n = max(1, len(panels))
    left = 8
    width = (W - left - 8) / n
    top, bottom = HEAD, height - FOOT
    out = [
        f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" class="plot">',
        f"<title>{escape(title)}</title>",
        f'<text x="{W / 2}" y="18" text-anchor="middle" class="t">{escape(title)}</text>',
    ]
    for k, panel in enumerate(panels):
        x0 = left + k * width
        values = [b.value for b in panel.bars if b.value is not None and math.isfinite(b.value)]
        ticks = _scale(values, panel.limit)
        y0, y1 = ticks[0], ticks[-1]

        def sy(v: float, y0: float = y0, y1: float = y1) -> float:
            return bottom - (v - y0) / ((y1 - y0) or 1.0) * (bottom - top)

        ax = x0 + GUTTER
        right = x0 + width - 6
        out.append(f'<text x="{x0 + width / 2:.1f}" y="38" text-anchor="middle" class="l">'
                   f"<tspan font-weight=\"600\">{escape(panel.name)}</tspan></text>")  # fmt: skip
        if panel.limit is not None:
            out.append(f'<text x="{x0 + width / 2:.1f}" y="53" text-anchor="middle" '
                       f'class="lim-t">{escape(panel.limit_label)}</text>')  # fmt: skip
        for v in ticks:
            y = sy(v)
            out.append(f'<line x1="{ax:.1f}" x2="{right:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'class="g"/><text x="{ax - 4:.1f}" y="{y + 4:.1f}" text-anchor="end" '
                       f'class="k">{fmt_tick(v)}</text>')  # fmt: skip
        out.append(f'<line x1="{ax:.1f}" x2="{ax:.1f}" y1="{top}" y2="{bottom}" class="a"/>')
        slot = (right - ax) / max(1, len(panel.bars))
        bar_w = min(slot * 0.8, 46.0)
        for i, bar in enumerate(panel.bars):
            color = PALETTE[series.index(bar.series) % len(PALETTE)] if bar.series in series \
                else PALETTE[i % len(PALETTE)]  # fmt: skip
            cx = ax + slot * (i + 0.5)
            if bar.value is None or not math.isfinite(bar.value):
                out.append(f'<text x="{cx:.1f}" y="{sy(0) - 4:.1f}" text-anchor="middle" '
                           'class="k">—</text>')  # fmt: skip
                continue
            v = bar.value
            y_top, y_base = sy(max(v, 0.0)), sy(min(v, 0.0))
            label = value_fmt(v) + (" ✗" if bar.failed else "")
            css = "bar fail" if bar.failed else "bar over" if bar.over else "bar"
            out.append(
                f'<rect x="{cx - bar_w / 2:.1f}" y="{y_top:.1f}" width="{bar_w:.1f}" '
                f'height="{max(y_base - y_top, 0.5):.1f}" fill="{color}" class="{css}" '
                f'data-group="{escape(panel.name)}" data-series="{escape(bar.series)}" '
                f'data-label="{escape(value_fmt(v))}" data-failed="{str(bar.failed).lower()}">'
                f"<title>{escape(bar.series)} {escape(panel.name)}: {escape(value_fmt(v))}"
                f" {escape(unit)}</title></rect>"
            )
            ty = y_top - 4 if v >= 0 else y_base + 12
            size = 10.0 if text_width(label, 10) <= slot else 8.5
            out.append(f'<text x="{cx:.1f}" y="{ty:.1f}" text-anchor="middle" '
                       f'class="v{" vf" if bar.failed else ""}" style="font-size:{size}px">'
                       f"{escape(label)}</text>")  # fmt: skip
        if panel.limit is not None:
            y = sy(panel.limit)
            out.append(f'<line x1="{ax:.1f}" x2="{right:.1f}" y1="{y:.1f}" y2="{y:.1f}" '
                       f'class="lim" data-limit="{escape(panel.name)}"/>')  # fmt: skip
    out += _legend([*series, f"values in {unit}; ✗ over the limit"], height,
                   [*PALETTE[: len(series)], "#ffffff"])  # fmt: skip
    return "\n".join([*out, "</svg>"])


@dataclass(slots=True)
class Interval:
    """One row of a comparison: the change, its interval and the tolerance (all in ms)."""

    label: str
    diff: float
    low: float
    high: float
    tolerance: float
    verdict: str
    failed: bool = False


def interval_plot(rows: Sequence[Interval], *, title: str) -> str:
    """A row per statistic: the tolerance band (shaded), the interval (bar) and the change
    (dot) on one axis of ms, the verdict in a column of its own on the right."""
    label_w, verdict_w = 120, 210
    row_h, top = 26, 40
    height = top + len(rows) * row_h + 46
    # the axis fits the intervals and the smallest tolerance; a wider band is cut at the edge
    t_min = min(r.tolerance for r in rows)
    x_lo = min([-t_min, *(r.low for r in rows)])
    x_hi = max([t_min, *(r.high for r in rows)])
    pad = (x_hi - x_lo) * 0.1
    ticks = nice_ticks(x_lo - pad, x_hi + pad, 6)
    a, b = label_w, W - verdict_w

    def sx(v: float) -> float:
        v = min(max(v, ticks[0]), ticks[-1])
        return a + (v - ticks[0]) / ((ticks[-1] - ticks[0]) or 1.0) * (b - a)

    axis_y = top + len(rows) * row_h
    out = [
        f'<svg viewBox="0 0 {W} {height}" width="{W}" height="{height}" role="img" '
        f'aria-label="{escape(title)}" class="plot">',
        f"<title>{escape(title)}</title>",
        f'<text x="{W / 2}" y="18" text-anchor="middle" class="t">{escape(title)}</text>',
    ]
    last_right = -math.inf
    for v in ticks:
        x = sx(v)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{top - 6}" y2="{axis_y}" class="g"/>')
        text = f"{v:+g}" if v else "0"
        if x - text_width(text) / 2 >= last_right + 4:
            out.append(f'<text x="{x:.1f}" y="{axis_y + 15}" text-anchor="middle" class="k">'
                       f"{escape(text.replace('-', '−'))}</text>")  # fmt: skip
            last_right = x + text_width(text) / 2
    out.append(f'<line x1="{sx(0):.1f}" x2="{sx(0):.1f}" y1="{top - 6}" y2="{axis_y}" '
               'class="a"/>')  # fmt: skip
    out.append(f'<text x="{(a + b) / 2:.1f}" y="{height - 8}" text-anchor="middle" class="l">'
               "change against the baseline (ms): this run − baseline</text>")  # fmt: skip
    for i, r in enumerate(rows):
        y = top + i * row_h + row_h / 2
        band = f"{sx(-r.tolerance):.1f}"
        color = "#cf222e" if r.verdict == "regressed" else "#1a7f37" if r.verdict == "improved" \
            else "#444"  # fmt: skip
        out.append(
            f'<rect x="{band}" y="{y - 9:.1f}" width="{sx(r.tolerance) - sx(-r.tolerance):.1f}" '
            f'height="18" class="tol"><title>tolerance ±{r.tolerance:g} ms</title></rect>'
            f'<line x1="{sx(r.low):.1f}" x2="{sx(r.high):.1f}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="{color}" stroke-width="3"/>'
            f'<circle cx="{sx(r.diff):.1f}" cy="{y:.1f}" r="4" fill="{color}" '
            f'data-label="{escape(r.label)}"><title>{escape(r.label)}: {r.diff:+.2f} ms '
            f"[{r.low:+.2f}, {r.high:+.2f}]</title></circle>"
            f'<text x="{a - 8}" y="{y + 4:.1f}" text-anchor="end" class="k">'
            f"{escape(r.label)}</text>"
            f'<text x="{b + 8}" y="{y + 4:.1f}" class="k{" vf" if r.failed else ""}">'
            f"{escape(r.verdict + (' (gate)' if r.failed else ''))}"
            f'<tspan class="l"> ±{r.tolerance:g} ms</tspan></text>'
        )
    return "\n".join([*out, "</svg>"])
