"""A tiny inline-SVG plotter for the HTML report: lines and state bands (bars per statistic
and the comparison's intervals are in svgpanels).

Stdlib only, so a report opens anywhere without network or JavaScript. Every plot is one
`<svg>` string with a title, axes with round ticks, a legend, and a `<title>` tooltip plus a
visible label on the data points a reader compares (bars carry their value as text).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence
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
    if not (math.isfinite(lo) and math.isfinite(hi)) or not math.isfinite(hi - lo) or hi <= lo:
        lo = lo if math.isfinite(lo) and abs(lo) < 1e300 else 0.0
        hi = lo + 1.0
    raw = (hi - lo) / count
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    first, last = math.floor(lo / step), math.ceil(hi / step - 1e-9)
    return [round(i * step, 10) for i in range(first, last + 1)]


def log_ticks(lo: float, hi: float) -> list[float]:
    """1-2-5 ticks per decade covering [lo, hi] (lo > 0); on a range too narrow for three of
    them, every integer multiple (1…9) per decade, then round linear ticks inside the range."""
    for mults in ((1, 2, 5), (1, 2, 3, 4, 5, 6, 7, 8, 9)):
        ticks = []
        for exp in range(math.floor(math.log10(lo)), math.ceil(math.log10(hi)) + 1):
            ticks += [round(m * 10.0**exp, 12) for m in mults if lo <= m * 10.0**exp <= hi]
        if len(ticks) >= 3:
            return ticks
    inside = [t for t in nice_ticks(lo, hi, 4) if lo <= t <= hi]
    return inside if len(inside) >= 2 else [lo, hi]


TIME_STEPS = (1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400)


def time_ticks(t0: float, lo: float, hi: float, count: int = 6) -> list[float]:
    """Offsets in [lo, hi] (seconds after epoch time `t0`) that fall on round clock times:
    every 10 s, 1 min, 15 min... whichever gives about `count` ticks."""
    span = max(hi - lo, 1e-9)
    step = next((s for s in TIME_STEPS if span / s <= count), TIME_STEPS[-1])
    if span / step > 4 * count or not math.isfinite(t0 + hi):  # weeks: plain round numbers
        return [t for t in nice_ticks(lo, hi, count) if lo <= t <= hi]
    first = math.ceil((t0 + lo) / step) * step
    ticks, t = [], first
    while t <= t0 + hi + 1e-9:
        ticks.append(round(t - t0, 6))
        t += step
    return ticks


def clock(epoch: float) -> str:
    """HH:MM:SS UTC of an epoch time, for a time axis."""
    return time.strftime("%H:%M:%S", time.gmtime(epoch))


def text_width(text: str, size: float = 11.0) -> float:
    """A generous estimate of rendered width (system-ui at `size` px), to keep labels apart."""
    return len(text) * size * 0.62 + 2


def fmt_tick(v: float) -> str:
    """A short axis label: 0.5, 12, 1.5k."""
    if abs(v) >= 10_000:
        return f"{v / 1000:g}k"
    return f"{v:.4g}"


def _frame(title: str, x_label: str, y_label: str, height: int = H,
           plot_height: int | None = None) -> list[str]:  # fmt: skip
    """The svg element, title, x label at the very bottom, rotated y label centred on the plot
    area (`plot_height`: the height the plot area is laid out in, when the svg is taller)."""
    mid = TOP + ((plot_height or height) - TOP - BOTTOM) / 2
    return [
        f'<svg viewBox="0 0 {W} {height}" width="{W}" '
        f'height="{height}" role="img" aria-label="{escape(title)}" class="plot">',
        f"<title>{escape(title)}</title>",
        f'<text x="{W / 2}" y="20" text-anchor="middle" class="t">{escape(title)}</text>',
        f'<text x="{LEFT + (W - LEFT - RIGHT) / 2}" y="{height - 8}" text-anchor="middle" '
        f'class="l">{escape(x_label)}</text>',
        f'<text x="14" y="{mid}" text-anchor="middle" class="l" '
        f'transform="rotate(-90 14 {mid})">{escape(y_label)}</text>',
    ]


def _legend(names: Sequence[str], height: int = H,
            colors: Sequence[str] = PALETTE) -> list[str]:  # fmt: skip
    """Swatch and name per series along the bottom, on the next line when a row is full."""
    out, x, y = [], float(LEFT), height - 34
    for i, name in enumerate(names):
        width = 24 + text_width(name)
        if x + width > W - RIGHT and x > LEFT:
            x, y = float(LEFT), y + 14
        color = colors[i % len(colors)]
        out.append(
            f'<rect x="{x:.0f}" y="{y}" width="10" height="10" fill="{color}"/>'
            f'<text x="{x + 14:.0f}" y="{y + 9}" class="k">{escape(name)}</text>'
        )
        x += width
    return out


def legend_rows(names: Sequence[str]) -> int:
    """How many rows `_legend` needs for `names`."""
    rows, x = 1, float(LEFT)
    for name in names:
        width = 24 + text_width(name)
        if x + width > W - RIGHT and x > LEFT:
            rows, x = rows + 1, float(LEFT)
        x += width
    return rows


def _spread(labels: list[tuple[float, str]], gap: float, lo: float, hi: float) -> list[float]:
    """Positions for labels wanted at `labels[i][0]` along one axis, moved apart so neighbours
    are at least `gap` apart and stay within [lo, hi] (order kept)."""
    order = sorted(range(len(labels)), key=lambda i: labels[i][0])
    pos = [labels[i][0] for i in order]
    for j in range(1, len(pos)):
        pos[j] = max(pos[j], pos[j - 1] + gap)
    if pos and pos[-1] > hi:
        pos[-1] = hi
        for j in range(len(pos) - 2, -1, -1):
            pos[j] = min(pos[j], pos[j + 1] - gap)
    out = [0.0] * len(labels)
    for j, i in enumerate(order):
        out[i] = max(lo, pos[j])
    return out


def _axes(
    xs: list[float],
    ys: list[float],
    sx: Callable[[float], float],
    sy: Callable[[float], float],
    x_fmt: Callable[[float], str] = fmt_tick,
) -> list[str]:
    """Grid, tick marks and tick labels; an x label that would touch the one before is left
    out (its tick stays)."""
    out = []
    for v in ys:
        y = sy(v)
        out.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="g"/>'
            f'<text x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end" class="k">{fmt_tick(v)}</text>'
        )
    last_right = -math.inf
    for v in xs:
        x, label = sx(v), x_fmt(v)
        half = text_width(label) / 2
        out.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{H - BOTTOM}" y2="{H - BOTTOM + 4}" class="a"/>'
        )
        at, anchor = (x, "middle") if x + half <= W - 1 else (W - 1.0, "end")  # flush right
        if at - (half if anchor == "middle" else 2 * half) < last_right + 4:
            continue
        last_right = at + (half if anchor == "middle" else 0.0)
        out.append(f'<text x="{at:.1f}" y="{H - BOTTOM + 16}" text-anchor="{anchor}" class="k">'
                   f"{escape(label)}</text>")  # fmt: skip
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
    x_time0: float | None = None,
) -> str:
    """Lines (or steps) of every series on shared axes; `hlines` are labelled dashed limits;
    `y_max` fixes the top of the y axis (percentiles: 100); `x_time0` (an epoch time) makes x
    seconds after it, labelled in clock time (UTC) on round clock ticks."""
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
    elif x_time0 is not None:
        lo, hi = min(xs_all), max(xs_all)
        x0, x1 = lo, hi if hi > lo else lo + 1.0
        x_ticks = time_ticks(x_time0, x0, x1)

        def tx(v: float) -> float:
            return v
    else:
        x_ticks = nice_ticks(min(xs_all), max(xs_all))
        x0, x1 = x_ticks[0], x_ticks[-1]

        def tx(v: float) -> float:
            return v

    def sx(v: float) -> float:
        return LEFT + (tx(v) - x0) / ((x1 - x0) or 1.0) * (W - LEFT - RIGHT)

    def sy(v: float) -> float:
        return H - BOTTOM - (v - y0) / ((y1 - y0) or 1.0) * (H - TOP - BOTTOM)

    x_fmt = fmt_tick if x_time0 is None else (lambda v: clock(x_time0 + v))
    height = H + 14 * (legend_rows([s.name for s in series]) - 1)  # room for a wrapped legend
    out = _frame(title, x_label, y_label, height, H) + _axes(x_ticks, y_ticks, sx, sy, x_fmt)
    wanted = [(sy(value) - 4, label) for value, label in hlines]
    for (value, label), y_text in zip(hlines, _spread(wanted, 13, TOP + 10, H - BOTTOM - 2),
                                      strict=True):  # fmt: skip
        y = sy(value)
        out.append(
            f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{y:.1f}" y2="{y:.1f}" class="lim"/>'
            f'<text x="{W - RIGHT - 4}" y="{y_text:.1f}" text-anchor="end" class="lim-t">'
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
        if s.marks or len(good) == 1:  # a lone point is no line: mark it
            for j, (x, y) in enumerate(good):
                tip = s.labels[j] if j < len(s.labels) else f"{x:g}, {y:g}"
                out.append(
                    f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{color}" '
                    f'data-label="{escape(tip)}"><title>{escape(s.name)}: {escape(tip)}</title>'
                    "</circle>"
                )
    out += _legend([s.name for s in series])
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
    t0: float | None = None,
) -> str:
    """One band per row coloured by state (CLOSED/HALF_OPEN/OPEN), each state held until the
    next change; `window` shades a span (the injected fault) across every row; `t0` (the
    phase's start, epoch) labels the axis in clock time (UTC)."""
    band, gap = 26, 10
    height = TOP + len(rows) * (band + gap) + BOTTOM
    left = 170
    times = [t for _, tl in rows for t, _ in tl] + [end, *(window or ())]
    if t0 is None:
        x_ticks = nice_ticks(0.0, max(times) if times else 1.0)
        x1 = x_ticks[-1] or 1.0
    else:
        x1 = max(times) if times and max(times) > 0 else 1.0
        x_ticks = time_ticks(t0, 0.0, x1)
    x_fmt = fmt_tick if t0 is None else (lambda v: clock(t0 + v))

    def sx(v: float) -> float:
        return left + max(0.0, v) / x1 * (W - left - RIGHT)

    out = _frame(title, x_label, "", height)
    axis_y = height - BOTTOM
    last_right = -math.inf
    for v in x_ticks:
        out.append(f'<line x1="{sx(v):.1f}" x2="{sx(v):.1f}" y1="{TOP}" y2="{axis_y}" class="g"/>')
        label, half = x_fmt(v), text_width(x_fmt(v)) / 2
        at, anchor = (sx(v), "middle") if sx(v) + half <= W - 1 else (W - 1.0, "end")
        if at - (half if anchor == "middle" else 2 * half) < last_right + 4:
            continue
        last_right = at + (half if anchor == "middle" else 0.0)
        out.append(f'<text x="{at:.1f}" y="{axis_y + 16}" text-anchor="{anchor}" class="k">'
                   f"{escape(label)}</text>")  # fmt: skip
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
    legend = [*STATE_COLORS.items(), ("fault", "#00000022")]
    out += _legend([n for n, _ in legend], height, [c for _, c in legend])
    return "\n".join([*out, "</svg>"])
