"""report.html: one self-contained page with the run's verdicts and plots (inline SVG).

The plots a person looks at first after a `soak once` run: latency distribution per phase (the
percentile curve), overhead per percentile with both methods side by side, the breaker timeline
(observed vs reported, per provider) and the gateway's RSS and CPU over the run. No scripts, no
stylesheets or fonts from elsewhere: the file opens offline, e.g. as a CI artifact.
"""

from __future__ import annotations

import time
from html import escape
from typing import Any

from soak.reports.formatting import (
    NA,
    check_parts,
    fmt_pct,
    is_number,
    key_figures,
    one_line,
    overall_word,
    status_word,
)
from soak.reports.svgplot import Series, bar_plot, line_plot, state_timeline
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
            caption = "What the gateway added: per request (gated) and percentile diff (seed)."
            out.append(_figure(f"overhead-{phase.name}", svg, caption))
    for phase in run.phases:
        svg = breaker_plot(phase)
        if svg:
            out.append(_figure(f"breaker-{phase.name}", svg, "Breaker state per provider: "
                               "observed from the mock's traces and reported by the gateway; "
                               "the shaded span is the injected fault."))  # fmt: skip
    for phase in run.phases:
        svg = capacity_plot(phase)
        if svg:
            out.append(_figure("capacity", svg, "Capacity search: per-request overhead p50 / p99"
                               " at each rate tried; the dashed line is the knee."))  # fmt: skip
    rss, cpu = process_plots(run)
    if rss:
        out.append(_figure("rss", rss, "Gateway resident memory (process tree) over the run."))
        out.append(_figure("cpu", cpu, "Gateway CPU (% of one core) over the run."))
    return out or ["<p>No measurements to plot: no phase completed a load.</p>"]


def capacity_plot(phase: PhaseReport) -> str | None:
    """The capacity curve: overhead p50 and p99 (ms) against the rate tried, in rate order."""
    steps = phase.details.get("steps") if phase.kind == "capacity" else None
    if not steps:
        return None
    steps = sorted(steps, key=lambda s: s["rate"])
    series = []
    for stat in ("overhead_p50", "overhead_p99"):
        points = [(s["rate"], s[stat] * 1e3) for s in steps if s.get(stat) is not None]
        labels = [
            f"{x:g} req/s: {y:.2f} ms, {s['success']:.1%} ok"
            for (x, y), s in zip(points, [s for s in steps if s.get(stat) is not None], strict=True)
        ]
        series.append(Series(stat.replace("overhead_", "overhead "), points, True, labels))
    knee = phase.details.get("knee")
    title = "Capacity curve" + (f" (knee {knee:g} req/s)" if knee else " (no rate held the SLO)")
    return line_plot(series, title=title, x_label="rate tried (req/s)",
                     y_label="per-request overhead (ms)")  # fmt: skip


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
    """Bars per statistic (µs): both overhead methods side by side, SLO limits as lines."""
    if phase.kind != "overhead" and "overhead_percentile_diff" not in phase.distributions:
        return None  # elsewhere (stress, breaker) queueing, not the gateway, dominates it
    methods = [(label, phase.distributions.get(key)) for key, label in METHODS]
    if not any(s is not None and s.count for _, s in methods):
        return None
    series = [
        (
            label,
            [s.get(stat) * 1e6 if s is not None and s.count else None for stat in OVERHEAD_STATS],
        )
        for label, s in methods
    ]
    limits = {}
    for check in phase.checks:
        stat = check.name.removeprefix("overhead ")
        if check.name.startswith("overhead ") and stat in OVERHEAD_STATS and check.unit == "s":
            limits[stat] = (check.threshold * 1e6, f"SLO < {check.threshold * 1e6:g} µs")
    return bar_plot(
        list(OVERHEAD_STATS), series, title=f"Gateway overhead per percentile — {phase.name}",
        y_label="overhead (µs)", value_fmt=micros, limits=limits,
    )  # fmt: skip


def micros(value: float) -> str:
    """A bar label in µs: one decimal below 100 µs, whole µs above."""
    return f"{value:.1f}" if abs(value) < 100 else f"{value:.0f}"


def breaker_plot(phase: PhaseReport) -> str | None:
    """State bands per provider and source, from the breaker phase's details."""
    details = phase.details or {}
    observed = details.get("observed")
    if not isinstance(observed, dict):
        return None
    reported = details.get("reported")
    rows: list[tuple[str, list[tuple[float, str]]]] = []
    for provider in sorted(set(observed) | set(reported if isinstance(reported, dict) else ())):
        for source, data in (("observed", observed), ("reported", reported)):
            entry = data.get(provider) if isinstance(data, dict) else None
            if isinstance(entry, dict):
                timeline = [(float(t), str(s)) for t, s in entry.get("timeline") or []]
                rows.append((f"{provider} {source}", timeline))
    if not isinstance(reported, dict):
        rows.append((f"reported: {reported or 'none'}", []))
    start, end = details.get("fault_start"), details.get("fault_end")
    window = (float(start), float(end)) if is_number(start) and is_number(end) else None
    return state_timeline(rows, title=f"Circuit breaker timeline — {phase.name}",
                          end=max(phase.duration_s, window[1] if window else 0.0),
                          window=window)  # fmt: skip


def process_plots(run: RunReport) -> tuple[str | None, str | None]:
    """RSS (MB) and CPU (%) of the gateway over the run: one line per phase, run-relative time."""
    rss: list[Series] = []
    cpu: list[Series] = []
    t0 = run.started_at
    for phase in run.phases:
        rows = (phase.details or {}).get("process_series")
        if not rows:
            continue
        offset = phase.started_at - t0 if phase.started_at and t0 else 0.0
        rss.append(Series(phase.name, [(offset + t, r / 2**20) for t, r, _ in rows]))
        cpu.append(Series(phase.name, [(offset + t, c) for t, _, c in rows if c is not None]))
    if not rss:
        return None, None
    x_label = "seconds since the run started"
    return (
        line_plot(rss, title="Gateway RSS over time", x_label=x_label, y_label="RSS (MB)",
                  y_zero=False),
        line_plot(cpu, title="Gateway CPU over time", x_label=x_label, y_label="CPU (% of a core)"),
    )  # fmt: skip


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
