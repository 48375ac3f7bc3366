"""Figures, plot and docs section from bench_soak.py's rows (`python bench/bench_soak.py --report`).

Reads bench/results/soak-litellm.jsonl and soak-leaky.jsonl (whatever part of the hour ran),
writes docs/soak-rss.svg and the `## Soak of hours` section of docs/BENCHMARKS.md.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import textwrap
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from doc_section import write_section

MB = 1024 * 1024
HEADING = "## Soak of hours"
WINDOW = 600.0
SETUP = (
    "Setup: `soak run` on the embedded default's gateway (the LiteLLM proxy soak installs and "
    "starts, routed to the mock's Bedrock primary and OpenAI fallback) and, beside it, the same "
    "daemon on `tests/leaky_gateway.py --leak-kb 50` (a forwarding proxy that keeps 50 KB per "
    "request). One plan every 5 min: `calibration` and `overhead` (5 req/s for 10 s, mock at "
    "100 ms) and `memory` (40 requests, 2 in flight, mock at 1 s); between runs a background "
    "load of 2 req/s (`schedule[].background`, mock at 100 ms); `slo.memory.long_window: 30m`, "
    "`long_slope_mb_per_hour: 50`. A real Prometheus scrapes the daemon every 5 s with the "
    "rules of `soak rules --config` (evaluation every 15 s). The bench reads the gateway's RSS "
    "and fds itself (psutil, process tree) every 10 s, apart from the daemon's figures."
)
WARMUP = 600.0
"""Seconds left out of the RSS and fds slopes: the process's start-up is no trend."""


def rows(path: Path) -> tuple[dict[str, Any], list[dict[str, Any]], dict[str, Any] | None]:
    start: dict[str, Any] = {}
    out, end = [], None
    for line in path.read_text().splitlines():
        row = json.loads(line)
        if row["kind"] == "start":
            start = row
        elif row["kind"] == "row":
            out.append(row)
        elif row["kind"] == "end":
            end = row
    return start, out, end


def slope(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope (units per second)."""
    if len(points) < 2:
        return None
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    var = sum((t - mt) ** 2 for t, _ in points)
    return None if var == 0 else sum((t - mt) * (v - mv) for t, v in points) / var


def history(start: dict[str, Any]) -> list[dict[str, Any]]:
    """Every finished run's report from the daemon's history (read only), oldest first."""
    db = Path(start.get("tmp", "")) / "data" / "history.db"
    if not db.exists():
        return []
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        got = con.execute(
            "select started_at, status, report from runs where report is not null "
            "order by started_at"
        ).fetchall()
    finally:
        con.close()
    out = []
    for at, status, report in got:
        data = json.loads(report)
        phases = {p["name"]: p for p in data.get("phases", [])}
        memory = phases.get("memory", {})
        details = memory.get("details", {})
        out.append(
            {
                "t": at - start["at"],
                "status": status,
                "failed": sorted(
                    n for n, p in phases.items() if p.get("status") not in ("passed", "baseline")
                ),
                "memory": memory.get("status"),
                "growth": details.get("growth"),
                "slope_mb_per_min": details.get("slope_mb_per_min"),
                "notes": data.get("notes", []),
            }
        )
    return out


def figures(path: Path) -> dict[str, Any]:
    start, data, end = rows(path)
    runs_seen = history(start)
    limit = start["config"]["slo"]["memory"]["long_slope_mb_per_hour"]
    window = start["config"]["slo"]["memory"]["long_window"]
    gw = [r for r in data if r.get("gw_rss")]
    late = [r for r in gw if r["t"] >= WARMUP]
    rss_slope = slope([(r["t"], r["gw_rss"]) for r in late])
    fds_slope = slope([(r["t"], r["gw_fds"]) for r in late])
    runs: dict[float, tuple[float, float]] = {}
    for r in data:
        if r.get("overhead_at") and r.get("overhead_p50") is not None:
            runs[r["overhead_at"] - start["at"]] = (r["overhead_p50"], r["overhead_p99"])
    windows: dict[int, list[tuple[float, float]]] = {}
    for t, pair in runs.items():
        windows.setdefault(int(max(t, 0) // WINDOW), []).append(pair)
    drift = [
        (i, len(v), statistics.median(p for p, _ in v), statistics.median(q for _, q in v))
        for i, v in sorted(windows.items())
    ]
    last = data[-1] if data else {}
    over = next((r["t"] for r in data if (r.get("slope") or 0) * 3600 / MB > limit), None)
    verdicts = [r["memory_verdict"] for r in data if r.get("memory_verdict") is not None]
    return {
        "gateway": start["gateway"],
        "minutes": (data[-1]["t"] / 60) if data else 0.0,
        "rows": data,
        "window": window,
        "limit": limit,
        "pids": sorted({r["gw_pid"] for r in gw}),
        "rss_first": gw[0]["gw_rss"] if gw else None,
        "rss_last": gw[-1]["gw_rss"] if gw else None,
        "rss_slope_mb_h": None if rss_slope is None else rss_slope * 3600 / MB,
        "fds_first": gw[0]["gw_fds"] if gw else None,
        "fds_last": gw[-1]["gw_fds"] if gw else None,
        "fds_slope_h": None if fds_slope is None else fds_slope * 3600,
        "daemon_rss": [r["daemon_rss"] for r in data],
        "runs": last.get("runs"),
        "passed": last.get("passed"),
        "restarts": last.get("restarts"),
        "background": last.get("bg_requests"),
        "alerts_first": last.get("alerts_first", {}),
        "slope_over_limit_at": over,
        "slope_last_mb_h": None if last.get("slope") is None else last["slope"] * 3600 / MB,
        "memory_phase_verdicts": verdicts,
        "drift": drift,
        "end": end,
        "history": runs_seen,
    }


def _mb(v: float | None) -> str:
    return "—" if v is None else f"{v / MB:.1f} MB"


def _num(v: float | None, fmt: str = ".1f") -> str:
    return "—" if v is None else format(v, fmt)


def _memory_runs(r: dict[str, Any]) -> str:
    runs = [h for h in r["history"] if h["memory"] is not None]
    if not runs:
        return "no run yet"
    passed = sum(1 for h in runs if h["memory"] == "passed")
    growth = max((h["growth"] or 0.0) for h in runs)
    slope = max((h["slope_mb_per_min"] or 0.0) for h in runs)
    return (
        f"passed {passed} of {len(runs)} runs (growth at most {growth:.1%}, "
        f"slope at most {slope:.1f} MB/min)"
    )


def _failing(r: dict[str, Any]) -> str:
    counts: dict[str, int] = {}
    for h in r["history"]:
        for name in h["failed"]:
            counts[name] = counts.get(name, 0) + 1
    total = len(r["history"])
    return ", ".join(f"{n} {c} of {total}" for n, c in sorted(counts.items())) or "none"


def svg(results: list[dict[str, Any]]) -> str:
    """Gateway RSS over time (top) and the daemon's long-window slope gauge (bottom)."""
    w, h, pad = 760, 440, 60
    colours = {"litellm": "#1f77b4", "leaky": "#d62728"}
    top, bottom = (30, 200), (250, 400)
    t_max = max((r["rows"][-1]["t"] for r in results if r["rows"]), default=60) / 60
    rss_max = max((x["gw_rss"] for r in results for x in r["rows"] if x.get("gw_rss")), default=1)
    rss_max = rss_max / MB * 1.1
    slopes = [x["slope"] * 3600 / MB for r in results for x in r["rows"] if x.get("slope")]
    limit = results[0]["limit"] if results else 50
    s_max = max([*slopes, limit * 1.5]) * 1.1
    s_min = min([*slopes, 0.0])

    def x(minutes: float) -> float:
        return pad + (w - 2 * pad) * minutes / max(t_max, 1e-9)

    def y(v: float, lo: float, hi: float, band: tuple[int, int]) -> float:
        return band[1] - (band[1] - band[0]) * (v - lo) / max(hi - lo, 1e-9)

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'font-family="sans-serif" font-size="11">',
        f'<rect width="{w}" height="{h}" fill="white"/>',
    ]
    for band, title in ((top, "gateway RSS (MB)"), (bottom, "long-window RSS slope (MB/h)")):
        out.append(f'<line x1="{pad}" y1="{band[1]}" x2="{w - pad}" y2="{band[1]}" stroke="#999"/>')
        out.append(f'<line x1="{pad}" y1="{band[0]}" x2="{pad}" y2="{band[1]}" stroke="#999"/>')
        out.append(f'<text x="{pad}" y="{band[0] - 8}">{title}</text>')
    for frac in (0, 0.5, 1):
        out.append(
            f'<text x="{pad - 6}" y="{y(frac * rss_max, 0, rss_max, top) + 4:.0f}" '
            f'text-anchor="end">{frac * rss_max:.0f}</text>'
        )
        v = s_min + frac * (s_max - s_min)
        out.append(
            f'<text x="{pad - 6}" y="{y(v, s_min, s_max, bottom) + 4:.0f}" '
            f'text-anchor="end">{v:.0f}</text>'
        )
    for m in range(0, int(t_max) + 1, 10):
        out.append(f'<text x="{x(m):.0f}" y="{bottom[1] + 16}" text-anchor="middle">{m} min</text>')
    ly = y(limit, s_min, s_max, bottom)
    out.append(
        f'<line x1="{pad}" y1="{ly:.1f}" x2="{w - pad}" y2="{ly:.1f}" stroke="#555" '
        f'stroke-dasharray="4 3"/><text x="{w - pad}" y="{ly - 4:.0f}" '
        f'text-anchor="end">limit {limit:g} MB/h</text>'
    )
    for i, r in enumerate(results):
        colour = colours.get(r["gateway"], "#333")
        pts = [
            (x(p["t"] / 60), y(p["gw_rss"] / MB, 0, rss_max, top))
            for p in r["rows"]
            if p.get("gw_rss")
        ]
        out.append(
            '<polyline fill="none" stroke-width="1.5" stroke="{}" points="{}"/>'.format(
                colour, " ".join(f"{a:.1f},{b:.1f}" for a, b in pts)
            )
        )
        sp = [
            (x(p["t"] / 60), y(p["slope"] * 3600 / MB, s_min, s_max, bottom))
            for p in r["rows"]
            if p.get("slope") is not None
        ]
        if sp:
            out.append(
                '<polyline fill="none" stroke-width="1.5" stroke="{}" points="{}"/>'.format(
                    colour, " ".join(f"{a:.1f},{b:.1f}" for a, b in sp)
                )
            )
        fired = r["alerts_first"].get("SoakGatewayMemoryLongSlope")
        if fired is not None:
            fx = x(fired / 60)
            out.append(
                f'<line x1="{fx:.1f}" y1="{bottom[0]}" x2="{fx:.1f}" y2="{bottom[1]}" '
                f'stroke="{colour}" stroke-dasharray="2 2"/><text x="{fx + 3:.1f}" '
                f'y="{bottom[0] + 12}" fill="{colour}">SoakGatewayMemoryLongSlope fired</text>'
            )
        label = {"litellm": "LiteLLM", "leaky": "leaking 50 KB/request"}.get(r["gateway"], "")
        out.append(
            f'<rect x="{w - pad - 170}" y="{top[0] + 14 * i}" width="10" height="10" '
            f'fill="{colour}"/><text x="{w - pad - 155}" y="{top[0] + 9 + 14 * i}">'
            f"{label}</text>"
        )
    out.append("</svg>")
    return "\n".join(out) + "\n"


def section(results: list[dict[str, Any]]) -> str:
    by = {r["gateway"]: r for r in results}
    lines = [
        HEADING,
        "",
        f"Measured by `python bench/bench_soak.py` on {datetime.now(UTC):%Y-%m-%d} "
        "(2 shared cores, both runs at once on separate ports).",
        "",
    ]
    short = [r for r in results if r["minutes"] < 60]
    if short:
        lines += [
            "**Shorter than an hour:** "
            + "; ".join(f"the {r['gateway']} run covered {r['minutes']:.0f} minutes" for r in short)
            + " (the deadline of the session that ran it); the figures are for that time.",
            "",
        ]
    lines += [textwrap.fill(SETUP, 96), ""]
    lines += ["| | LiteLLM (embedded default) | leaking test gateway |", "|---|---|---|"]

    def row(name: str, fn: Any) -> None:
        lines.append(
            f"| {name} | "
            + " | ".join(fn(by[g]) if g in by else "—" for g in ("litellm", "leaky"))
            + " |"
        )

    row("minutes soaked", lambda r: f"{r['minutes']:.0f}")
    row(
        "scheduled runs (passed)",
        lambda r: f"{_num(r['runs'], '.0f')} ({_num(r['passed'] or 0, '.0f')})",
    )
    row("gateway processes (PIDs seen)", lambda r: str(len(r["pids"])))
    row("restarts (`soak_gateway_restarts_total`)", lambda r: _num(r["restarts"], ".0f"))
    row("background requests between runs", lambda r: _num(r["background"], ".0f"))
    row("gateway RSS first → last", lambda r: f"{_mb(r['rss_first'])} → {_mb(r['rss_last'])}")
    row(
        f"gateway RSS slope after {WARMUP / 60:.0f} min",
        lambda r: f"{_num(r['rss_slope_mb_h'])} MB/h",
    )
    row("gateway fds first → last", lambda r: f"{r['fds_first']} → {r['fds_last']}")
    row(
        f"gateway fds slope after {WARMUP / 60:.0f} min",
        lambda r: f"{_num(r['fds_slope_h'], '.2f')} /h",
    )
    row(
        "daemon RSS min / max",
        lambda r: (
            f"{_mb(min(r['daemon_rss']))} / {_mb(max(r['daemon_rss']))}" if r["daemon_rss"] else "—"
        ),
    )
    row("per-phase memory verdict (limits: growth 100%, slope 15 MB/min)", _memory_runs)
    row("phases failing their SLO (runs)", _failing)
    row("long-window slope gauge, last", lambda r: f"{_num(r['slope_last_mb_h'])} MB/h")
    row(
        "long-window slope over the limit from",
        lambda r: (
            "never"
            if r["slope_over_limit_at"] is None
            else f"minute {r['slope_over_limit_at'] / 60:.0f}"
        ),
    )
    row(
        "alerts fired in Prometheus (first minute)",
        lambda r: (
            ", ".join(f"{k} ({v / 60:.0f})" for k, v in sorted(r["alerts_first"].items())) or "none"
        ),
    )
    row(
        "SIGTERM to exit; gateway left behind",
        lambda r: (
            "—"
            if r["end"] is None
            else f"{r['end']['stop_s']:.1f} s; {'yes' if r['end']['gateway_left'] else 'no'}"
        ),
    )
    lines += [
        "",
        "Overhead of the `overhead` phase per 10-minute window (median of the runs' exact "
        "p50 / p99; drift shows as a trend down the table):",
        "",
        "| window | LiteLLM runs | LiteLLM p50 | LiteLLM p99 | leaky runs | leaky p50 "
        "| leaky p99 |",
        "|---|---|---|---|---|---|---|",
    ]
    windows = sorted({d[0] for r in results for d in r["drift"]})
    for i in windows:
        cells = []
        for g in ("litellm", "leaky"):
            d = next((d for d in by.get(g, {"drift": []})["drift"] if d[0] == i), None)
            cells += (
                ["—"] * 3
                if d is None
                else [str(d[1]), f"{d[2] * 1000:.1f} ms", f"{d[3] * 1000:.1f} ms"]
            )
        lines.append(f"| {i * 10}–{i * 10 + 10} min | " + " | ".join(cells) + " |")
    lines += ["", "![gateway RSS and the daemon's long-window slope](soak-rss.svg)", ""]
    return "\n".join(lines) + "\n"


def report(results_dir: Path, docs: Path, extra: str = "") -> None:
    results = [
        figures(p) for g in ("litellm", "leaky") if (p := results_dir / f"soak-{g}.jsonl").exists()
    ]
    (docs / "soak-rss.svg").write_text(svg(results))
    text = section(results) + extra
    write_section(docs / "BENCHMARKS.md", HEADING, text)
    print(text)
