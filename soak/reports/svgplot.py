"""A tiny inline-SVG plotter for the HTML report: lines, grouped bars and state bands.

Stdlib only, so a report opens anywhere without network or JavaScript. Every plot is one
`<svg>` string with a title, axes with round ticks, a legend, and a `<title>` tooltip plus a
visible label on the data points a reader compares (bars carry their value as text).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from html import escape

from soak.breaker import BreakerState

PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f")
W, H = 720, 300
LEFT, RIGHT, TOP, BOTTOM = 64, 16, 34, 58
"""Plot size and margins in SVG user units."""


@dataclass(slots=True)
class Series:
    """One named line: (x, y) points; `marks` puts a labelled dot on each point."""

    name: str
    points: list[tuple[float, float]]
    marks: bool = False
    labels: list[str] = field(default_factory=list)
    """One tooltip per point when `marks` (defaults to the coordinates)."""


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About `count` round tick values covering [lo, hi]."""
    if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
        hi = lo + 1.0
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step), math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks per decade covering [lo, hi] (lo > 0)."""
    ticks = []
    for exp in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
        ticks += [m * 10.0**exp for m in (1, 2, 5) if lo <= m * 10.0**exp <= hi]
    return ticks or [lo, hi]


def fmt_tick(v: float) -> str:
    """A short axis label: 0.5, 12, 1.5k."""
    if abs(v) >= 10_000:
        return f"{v / 1000:g}k"
    return f"{v:.4g}"


def _frame(title: str, x_label: str, y_label: str, height: int = H) -> list[str]:
    return [
        f'<svg viewBox="0 0 {W} {height}" width="{W}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" class="plot">',
        f"<title>{escape(title)}</title>",
        f'<text x="{W / 2}" y="20" text-anchor="middle" class="t">{escape(title)}</text>',
        f'<text x="{LEFT + (W - LEFT - RIGHT) / 2}" y="{height - 8}" text-anchor="middle" '
        f'class="l">{escape(x_label)}</text>',
        f'<text x="14" y="{TOP + (height - TOP - BOTTOM) / 2}" text-anchor="middle" class="l" '
        f'transform="rotate(-90 14 {TOP + (height - TOP - BOTTOM) / 2})">{escape(y_label)}</text>',
    ]


def _legend(names: Sequence[str], height: int = H) -> list[str]:
    out, x = [], LEFT
    for i, name in enumerate(names):
        color = PALETTE[i % len(PALETTE)]
        out.append(
            f'<rect x="{x}" y="{height - 34}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14}" y="{height - 25}" class="k">{escape(name)}</text>'
        )
        x += 24 + 7 * len(name)
    return out


def _axes(
    xs: list[float], ys: list[float], sx: Callable[[float], float], sy: Callable[[float], float]
) -> list[str]:
    out = []
    for v in ys:
        y = sy(v)
        out.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="g"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="k">{fmt_tick(v)}</text>'
        )
    for v in xs:
        x = sx(v)
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{H - BOTTOM}" y2="{H - BOTTOM + 4}" class="a"/>'
            f'<text x="{x:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" class="k">'
            f"{fmt_tick(v)}</text>"
        )
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" '
               f'height="{H - TOP - BOTTOM}" class="f"/>')  # fmt: skip
    return out


def line_plot(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    x_log: bool = False,
    step: bool = False,
    y_zero: bool = True,
    y_max: float | None = None,
    hlines: Sequence[tuple[float, str]] = (),
) -> str:
    """Lines (or steps) of every series on shared axes; `hlines` are labelled dashed limits;
    `y_max` fixes the top of the y axis (percentiles: 100)."""
    pts = [p for s in series for p in s.points if all(map(math.isfinite, p))]
    if x_log:
        pts = [p for p in pts if p[0] > 0]
    xs_all = [x for x, _ in pts] or [0.0, 1.0]
    ys_all = [y for _, y in pts] + [v for v, _ in hlines] or [0.0, 1.0]
    y_lo = 0.0 if y_zero else min(ys_all)
    top = y_max if y_max is not None else max(ys_all) * 1.05 if max(ys_all) > 0 else 1.0
    y_ticks = nice_ticks(min(y_lo, *ys_all), top)
    y0, y1 = y_ticks[0], y_ticks[-1]
    if x_log:
        x_ticks = log_ticks(min(xs_all) * 0.9, max(xs_all) * 1.1)
        x0, x1 = math.log10(min(xs_all) * 0.9), math.log10(max(xs_all) * 1.1)

        def tx(v: float) -> float:
            return math.log10(v)
    else:
        x_ticks = nice_ticks(min(xs_all), max(xs_all))
        x0, x1 = x_ticks[0], x_ticks[-1]

        def tx(v: float) -> float:
            return v

    def sx(v: float) -> float:
        return LEFT + (tx(v) - x0) / ((x1 - x0) or 1.0) * (W - LEFT - RIGHT)

    def sy(v: float) -> float:
        return H - BOTTOM - (v - y0) / ((y1 - y0) or 1.0) * (H - TOP - BOTTOM)

    out = _frame(title, x_label, y_label) + _axes(x_ticks, y_ticks, sx, sy)
    for value, label in hlines:
        y = sy(value)
        out.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="lim"/>'
            f'<text x="{W - RIGHT - 4}" y="{y - 4:.1f}" text-anchor="end" class="lim-t">'
            f"{escape(label)}</text>"
        )
    for i, s in enumerate(series):
        color = PALETTE[i % len(PALETTE)]
        good = [p for p in s.points if all(map(math.isfinite, p)) and (p[0] > 0 or not x_log)]
        coords: list[tuple[float, float]] = []
        for j, (x, y) in enumerate(good):
            if step and j:
                coords.append((sx(x), coords[-1][1]))
            coords.append((sx(x), sy(y)))
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in coords)
        out.append(f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="2">'
                   f"<title>{escape(s.name)}</title></polyline>")  # fmt: skip
        if s.marks:
            for j, (x, y) in enumerate(good):
                tip = s.labels[j] if j < len(s.labels) else f"{x:g}, {y:g}"
                out.append(
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}" '
                    f'data-label="{escape(tip)}"><title>{escape(s.name)}: {escape(tip)}</title>'
                    "</circle>"
                )
    out += _legend([s.name for s in series])
    return "\n".join([*out, "</svg>"])


def bar_plot(
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    title: str,
    y_label: str,
    x_label: str = "",
    value_fmt: Callable[[float], str] = lambda v: f"{v:.1f}",
    limits: Mapping[str, tuple[float, str]] | None = None,
) -> str:
    """Grouped bars: one group per entry of `groups`, one bar per series, values written on top;
    `limits` draws a labelled dashed threshold across the bars of that group."""
    limits = limits or {}
    values = [v for _, vals in series for v in vals if v is not None and math.isfinite(v)]
    values += [v for v, _ in limits.values()]
    y_ticks = nice_ticks(min(0.0, *values, 0.0), max([*values, 0.0]) * 1.1 or 1.0)
    y0, y1 = y_ticks[0], y_ticks[-1]

    def sy(v: float) -> float:
        return H - BOTTOM - (v - y0) / ((y1 - y0) or 1.0) * (H - TOP - BOTTOM)

    plot_w = W - LEFT - RIGHT
    slot = plot_w / max(1, len(groups))
    bar_w = slot * 0.8 / max(1, len(series))
    out = _frame(title, x_label, y_label)
    out += _axes([], y_ticks, lambda v: 0.0, sy)
    for g, group in enumerate(groups):
        gx = LEFT + g * slot
        out.append(f'<text x="{gx + slot / 2:.1f}" y="{H - BOTTOM + 16}" text-anchor="middle" '
                   f'class="k">{escape(group)}</text>')  # fmt: skip
        for i, (name, vals) in enumerate(series):
            v = vals[g] if g < len(vals) else None
            x = gx + slot * 0.1 + i * bar_w
            if v is None or not math.isfinite(v):
                out.append(f'<text x="{x + bar_w / 2:.1f}" y="{sy(0) - 4:.1f}" '
                           'text-anchor="middle" class="k">—</text>')  # fmt: skip
                continue
            top, base = sy(max(v, 0.0)), sy(min(v, 0.0))
            label = value_fmt(v)
            out.append(
                f'<rect x="{x:.1f}" y="{top:.1f}" width="{bar_w - 2:.1f}" '
                f'height="{max(base - top, 0.5):.1f}" fill="{PALETTE[i % len(PALETTE)]}" '
                f'data-group="{escape(group)}" data-series="{escape(name)}" '
                f'data-label="{escape(label)}"><title>{escape(name)} {escape(group)}: '
                f"{escape(label)}</title></rect>"
                f'<text x="{x + bar_w / 2:.1f}" y="{top - 4:.1f}" text-anchor="middle" '
                f'class="v">{escape(label)}</text>'
            )
    for g, group in enumerate(groups):
        if group not in limits:
            continue
        value, label = limits[group]
        a, b, y = LEFT + g * slot + slot * 0.05, LEFT + (g + 1) * slot - slot * 0.05, sy(value)
        out.append(
            f'<line x1="{a:.1f}" x2="{b:.1f}" y1="{y:.1f}" y2="{y:.1f}" class="lim" '
            f'data-limit="{escape(group)}"/><text x="{b:.1f}" y="{y - 3:.1f}" text-anchor="end" '
            f'class="lim-t">'
            f"{escape(label)}</text>"
        )
    out += _legend([name for name, _ in series])
    return "\n".join([*out, "</svg>"])


STATE_COLORS = {
    BreakerState.CLOSED.name: "#2ca02c",
    BreakerState.HALF_OPEN.name: "#ffbf00",
    BreakerState.OPEN.name: "#d62728",
}


def state_timeline(
    rows: Sequence[tuple[str, Sequence[tuple[float, str]]]],
    *,
    title: str,
    end: float,
    window: tuple[float, float] | None = None,
    x_label: str = "seconds since the phase started",
) -> str:
    """One band per row coloured by state (CLOSED/HALF_OPEN/OPEN), each state held until the
    next change; `window` shades a span (the injected fault) across every row."""
    band, gap = 26, 10
    height = TOP + len(rows) * (band + gap) + BOTTOM
    left = 170
    times = [t for _, tl in rows for t, _ in tl] + [end, *(window or ())]
    x_ticks = nice_ticks(0.0, max(times) if times else 1.0)
    x1 = x_ticks[-1] or 1.0

    def sx(v: float) -> float:
        return left + max(0.0, v) / x1 * (W - left - RIGHT)

    out = _frame(title, x_label, "", height)
    axis_y = height - BOTTOM
    for v in x_ticks:
        out.append(f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{TOP}" y2="{axis_y}" class="g"/>'
                   f'<text x="{sx(v):.1f}" y="{axis_y + 16}" text-anchor="middle" class="k">'
                   f"{fmt_tick(v)}</text>")  # fmt: skip
    for r, (label, timeline) in enumerate(rows):
        y = TOP + r * (band + gap)
        out.append(f'<text x="{left - 6}" y="{y + band / 2 + 4}" text-anchor="end" class="k">'
                   f"{escape(label)}</text>")  # fmt: skip
        for j, (t, state) in enumerate(timeline):
            t_next = timeline[j + 1][0] if j + 1 < len(timeline) else max(end, t)
            color = STATE_COLORS.get(state, "#bbbbbb")
            out.append(
                f'<rect x="{sx(t):.1f}" y="{y}" width="{max(sx(t_next) - sx(t), 1.5):.1f}" '
                f'height="{band}" fill="{color}" data-state="{escape(state)}" '
                f'data-t="{t:g}"><title>{escape(label)}: {escape(state)} from {t:g}s</title>'
                "</rect>"
            )
    if window is not None:  # drawn over the bands, translucent
        a, b = sx(window[0]), sx(window[1])
        out.append(f'<rect x="{a:.1f}" y="{TOP - 4}" width="{max(b - a, 1):.1f}" '
                   f'height="{axis_y - TOP + 4}" class="win"><title>fault injected '
                   f"{window[0]:g}s → {window[1]:g}s</title></rect>")  # fmt: skip
    x = left
    for state, color in [*STATE_COLORS.items(), ("fault", "#00000022")]:
        out.append(f'<rect x="{x}" y="{height - 34}" width="10" height="10" fill="{color}"/>'
                   f'<text x="{x + 14}" y="{height - 25}" class="k">{state}</text>')  # fmt: skip
        x += 30 + 7 * len(state)
    return "\n".join([*out, "</svg>"])
