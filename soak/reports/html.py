"""report.html: one self-contained page with the run's verdicts and plots (inline SVG).

The plots a person looks at first after a `soak once` run: latency distribution per phase (the
percentile curve), overhead per percentile with both methods side by side, each phase's own plot
(its `PhaseSpec.figure`: the breaker timeline, the capacity curve, overhead against payload
size; soak.reports.phase_plots) and the gateway's RSS and CPU over the run. No scripts, no
stylesheets or fonts from elsewhere: the file opens offline, e.g. as a CI artifact.
"""

from __future__ import annotations

import math
import time
from html import escape
from typing import Any

from soak import phases
from soak.baseline import StatComparison
from soak.reports.comparison_md import change_text, headline
from soak.reports.formatting import (
    NA,
    check_parts,
    fmt_pct,
    key_figures,
    one_line,
    overall_word,
    status_word,
)
from soak.reports.svgpanels import Bar, Interval, Panel, interval_plot, panel_plot
from soak.reports.svgplot import Series, line_plot
from soak.summary import LatencySummary, PhaseReport, RunReport

CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:24px auto;max-width:960px;color:#222}
h1{font-size:22px}h2{font-size:18px;margin-top:28px;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:8px 0}td,th{border:1px solid #ccc;padding:3px 8px;
text-align:left}th{background:#f4f4f4}.PASS{color:#1a7f37}.FAIL,.ERROR{color:#cf222e;
font-weight:bold}.BASELINE,.SKIP{color:#666}.warn{background:#fff4e5;border:1px solid #f0b000;
padding:8px}figure{margin:12px 0}figcaption{color:#555;font-size:13px}
svg.plot{max-width:100%;height:auto;background:#fff}
.t{font-size:14px;font-weight:600}.l{font-size:12px;fill:#444}.k{font-size:11px;fill:#333}
.v{font-size:10px;fill:#111}.g{stroke:#e6e6e6}.a{stroke:#888}.f{fill:none;stroke:#888}
.lim{stroke:#cf222e;stroke-dasharray:6 4}.lim-t{font-size:11px;fill:#cf222e}
.win{fill:#000;fill-opacity:.12;stroke:#000;stroke-dasharray:3 3}
.bar.fail{stroke:#cf222e;stroke-width:3}.bar.over{stroke:#cf222e;stroke-width:1.5;
stroke-dasharray:3 2}.vf{fill:#cf222e;font-weight:700}.tol{fill:#1f77b4;fill-opacity:.12}
td.REGR{background:#fff4e5}
"""

PCT_POINTS = (("min", 0.0), ("p50", 50.0), ("p90", 90.0), ("p95", 95.0), ("p99", 99.0))
OVERHEAD_STATS = ("mean", "p50", "p90", "p95", "p99")
METHODS = (("overhead_per_request", "per request"), ("overhead_percentile_diff", "percentile diff"))


def render_html(run: RunReport) -> str:
    """The whole report page for `run` (also for an aborted or half-done run)."""
    word = overall_word(run)
    title = f"llm-soak report: {run.target} — {word}"
    body = [f"<h1>{escape(title)}</h1>", _run_table(run)]
    if run.aborted or run.error:
        reason = one_line(run.error or "the run was aborted")
        body.append(f'<p class="warn">Run {"aborted" if run.aborted else "error"}: '
                    f"{escape(reason)}</p>")  # fmt: skip
    body += ["<h2>Verdict</h2>", _verdict_table(run.phases)]
    body += _comparison(run)
    body += ["<h2>Plots</h2>", *plots(run)]
    body += ["<h2>Checks</h2>", _checks_table(run.phases)]
    notes = [(p.name, n) for p in run.phases for n in ([p.error] if p.error else []) + p.notes]
    if notes:
        body.append("<h2>Errors and notes</h2><ul>")
        body += [f"<li><b>{escape(n)}</b>: {escape(one_line(t))}</li>" for n, t in notes]
        body.append("</ul>")
    return (
        '<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8">'
        f"<title>{escape(title)}</title><style>{CSS}</style></head>\n<body>\n"
        + "\n".join(body)
        + "\n</body></html>\n"
    )


def plots(run: RunReport) -> list[str]:
    """Every plot as a `<figure>` (its id names the plot), in reading order."""
    out: list[str] = []
    latency = latency_plot(run.phases)
    if latency:
        out.append(_figure("latency", latency, "Client latency percentiles (from the intended "
                                               "start); log scale."))  # fmt: skip
    for phase in run.phases:
        svg = overhead_plot(phase)
        if svg:
            caption = ("What the gateway added, a panel per statistic on its own scale with its"
                       " limit: per request (gated; a failing bar is outlined and marked ✗) and"
                       " the seed's percentile diff.")
            out.append(_figure(f"overhead-{phase.name}", svg, caption))
    for spec in phases.registry():  # each phase's own plot (`PhaseSpec.figure`), plan order
        draw = spec.figure
        for figure in (draw(p) for p in run.phases if draw and p.kind == spec.name):
            if figure is not None:
                out.append(_figure(*figure))
    rss, cpu = process_plots(run)
    if rss:
        out.append(_figure("rss", rss, "Gateway resident memory (process tree) over the run."))
        out.append(_figure("cpu", cpu, "Gateway CPU (% of one core) over the run."))
    return out or ["<p>No measurements to plot: no phase completed a load.</p>"]


def latency_plot(phases: list[PhaseReport]) -> str | None:
    """Percentile curve per phase: x latency (ms, log), y percentile; a point per statistic."""
    series = []
    for phase in phases:
        summary = phase.latency
        if summary is None or not summary.count:
            continue
        points, labels = _percentile_points(summary)
        series.append(Series(phase.name, points, marks=True, labels=labels))
    if not series:
        return None
    return line_plot(series, title="Latency distribution per phase", x_label="latency (ms)",
                     y_label="percentile", x_log=True, y_max=100.0)  # fmt: skip


def _percentile_points(summary: LatencySummary) -> tuple[list[tuple[float, float]], list[str]]:
    points, labels = [], []
    for stat, pct in (*PCT_POINTS, ("max", 100.0)):
        value = summary.get(stat) * 1e3
        points.append((value, pct))
        labels.append(f"{stat} {value:.2f} ms")
    return points, labels


def overhead_plot(phase: PhaseReport) -> str | None:
    """A panel per statistic, each on its own scale (ms) with its SLO limit: both overhead
    methods side by side; the gated per-request bar over its limit is marked as failing."""
    if phase.kind != "overhead" and "overhead_percentile_diff" not in phase.distributions:
        return None  # elsewhere (stress, breaker) queueing, not the gateway, dominates it
    methods = [(key, label, phase.distributions.get(key)) for key, label in METHODS]
    if not any(s is not None and s.count for _, _, s in methods):
        return None
    checks = {c.name.removeprefix("overhead "): c for c in phase.checks
              if c.name.startswith("overhead ") and c.unit == "s"}  # fmt: skip
    panels = []
    for stat in OVERHEAD_STATS:
        check = checks.get(stat)
        limit = check.threshold * 1e3 if check is not None else None
        bars = []
        for key, label, s in methods:
            value = s.get(stat) * 1e3 if s is not None and s.count else None
            over = limit is not None and value is not None and value >= limit
            gated = key == "overhead_per_request" and check is not None and not check.passed
            bars.append(Bar(label, value, failed=gated, over=over and not gated))
        panels.append(Panel(stat, bars, limit, f"limit < {millis(limit)} ms" if limit else ""))
    return panel_plot(panels, title=f"Gateway overhead per statistic — {phase.name}",
                      series=[label for _, label in METHODS], value_fmt=millis,
                      unit="ms")  # fmt: skip


def millis(value: float | None) -> str:
    """A value in ms with three significant digits: 0.812, 4.10, 12.3, 100."""
    if value is None or not math.isfinite(value):
        return NA
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.3g}" if abs(value) >= 1 else f"{value:.3f}".rstrip("0").rstrip(".") or "0"


def comparison_plot(run: RunReport) -> str | None:
    """The comparison with the baseline: each gated phase's statistics, change and interval
    against the tolerance band."""
    c = run.comparison
    if c is None:
        return None
    rows = [
        Interval(f"{p.phase} {s.stat}", s.diff * 1e3, s.low * 1e3, s.high * 1e3,
                 s.tolerance * 1e3, s.verdict, s.failed)
        for p in c.phases if p.gated for s in p.stats
    ]  # fmt: skip
    if not rows:
        return None
    level = f"{c.confidence * 100:g}%"
    return interval_plot(rows, title=f"Compared with baseline {c.baseline_run_id} ({level}"
                         " intervals; shaded: tolerance)")  # fmt: skip


def process_plots(run: RunReport) -> tuple[str | None, str | None]:
    """RSS (MB) and CPU (%) of the gateway over the run: one line per phase, run-relative time."""
    rss: list[Series] = []
    cpu: list[Series] = []
    t0 = run.started_at
    for phase in run.phases:
        rows = phase.process_series
        if not rows:
            continue
        offset = phase.started_at - t0 if phase.started_at and t0 else 0.0
        rss.append(Series(phase.name, [(offset + t, r / 2**20) for t, r, _ in rows]))
        cpu.append(Series(phase.name, [(offset + t, c) for t, _, c in rows if c is not None]))
    if not rss:
        return None, None
    x_label, t0 = ("time (UTC)", t0) if t0 else ("seconds since the run started", None)
    return (
        line_plot(rss, title="Gateway RSS over time", x_label=x_label, y_label="RSS (MB)",
                  y_zero=False, x_time0=t0),
        line_plot(cpu, title="Gateway CPU over time", x_label=x_label,
                  y_label="CPU (% of a core)", x_time0=t0),
    )  # fmt: skip


def _comparison(run: RunReport) -> list[str]:
    """The comparison with a baseline run: headline, interval plot, table of every phase."""
    c = run.comparison
    if c is None:
        return []
    word = "FAIL" if c.failed else "PASS"
    out = [f"<h2>Compared with baseline {escape(c.baseline_run_id)}</h2>",
           f'<p class="{word}">{escape(headline(c))}</p>']  # fmt: skip
    svg = comparison_plot(run)
    if svg:
        out.append(_figure("comparison", svg, "Per-request overhead, this run − baseline: the dot"
                           " is the change, the bar its bootstrap interval, the shaded band the"
                           " tolerance; a verdict needs the whole interval outside the band."))
    rows = [[p.phase, s.stat + (" (gate)" if s.gated else ""),
             millis(s.baseline * 1e3) + _run(s.baseline_run, p.baseline_runs),
             millis(s.current * 1e3) + _run(s.current_run, p.current_runs),
             change_text(s), (_word(s), "FAIL" if s.failed
             else "PASS" if s.verdict != "regressed" else "REGR")]
            for p in c.phases for s in p.stats]  # fmt: skip
    if rows:
        out.append(_table(["Phase", "Statistic", "Baseline (ms)", "This run (ms)",
                           "Change (ms) [interval]", "Verdict"], rows))  # fmt: skip
    notes = [*c.notes, *(f"{p.phase}: {n}" for p in c.phases for n in p.notes)]
    if notes:
        out.append("<ul>" + "".join(f"<li>{escape(one_line(n))}</li>" for n in notes) + "</ul>")
    return out


def _run(number: int, runs: int) -> str:
    """Which of a repeated phase's runs a value comes from (nothing for a single run)."""
    return f" (run {number} of {runs})" if runs > 1 else ""


def _word(s: StatComparison) -> str:
    """A verdict in words (the markdown's ▲/▼ are not in every font a browser falls back to)."""
    return s.verdict.upper() if s.failed else s.verdict


def _figure(plot_id: str, svg: str, caption: str) -> str:
    return (f'<figure id="plot-{escape(plot_id)}" data-plot="{escape(plot_id)}">{svg}'
            f"<figcaption>{escape(caption)}</figcaption></figure>")  # fmt: skip


def _table(headers: list[str], rows: list[list[Any]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(_cell(c) for c in row) + "</tr>" for row in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _cell(value: Any) -> str:
    if isinstance(value, tuple):  # (text, css class)
        return f'<td class="{escape(value[1])}">{escape(str(value[0]))}</td>'
    return f"<td>{escape(one_line(value))}</td>"


def _run_table(run: RunReport) -> str:
    started = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime(run.started_at))
    duration = f"{max(0.0, run.finished_at - run.started_at):.1f}s" if run.finished_at else NA
    word = overall_word(run)
    return _table(["Target", "Kind", "Profile", "Run ID", "Started", "Duration", "Result"],
                  [[run.target, run.kind, run.profile, run.run_id, started, duration,
                    (word, word.split()[0])]])  # fmt: skip


def _verdict_table(phases: list[PhaseReport]) -> str:
    if not phases:
        return "<p>No phase ran.</p>"
    rows = []
    for p in phases:
        word = status_word(p.status)
        rows.append([p.name, p.kind, (word, word), f"{p.duration_s:.1f}s",
                     fmt_pct(p.success_ratio) if p.sent else NA, key_figures(p)])  # fmt: skip
    return _table(["Phase", "Kind", "Status", "Duration", "Success", "Key figures"], rows)


def _checks_table(phases: list[PhaseReport]) -> str:
    rows = []
    for p in phases:
        for c in p.checks:
            value, limit, unit = check_parts(c)
            word = "PASS" if c.passed else "FAIL"
            rows.append([p.name, c.name, f"{value} {unit}", f"{c.op} {limit} {unit}",
                         (word, word), c.tier or ""])  # fmt: skip
    if not rows:
        return "<p>No checks were judged.</p>"
    return _table(["Phase", "Check", "Value", "Limit", "Result", "Tier"], rows)


__all__ = ["plots", "render_html"]
