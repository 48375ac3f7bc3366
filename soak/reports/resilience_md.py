"""Markdown sections of the resilience phases, laid out like the seed's expected output.

Sustained load results, the circuit breaker observed vs reported (timelines, transitions,
time-to-open and time-to-recover), failover times, memory, and the production readiness
criteria with ✓/✗, tiers and the overall READY / NOT READY line. Each reads only
`PhaseReport` fields and its phase's typed details record, so a report parsed back from JSON
renders the same; anything missing shows as "—".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from soak.phases.breaker import BreakerDetails
from soak.phases.failover import FailoverDetails
from soak.phases.memory import MemoryDetails
from soak.phases.readiness import ReadinessDetails
from soak.reports.formatting import (
    NA,
    check_parts,
    fmt_auto,
    fmt_cpu,
    fmt_mb,
    fmt_num,
    fmt_pct,
    fmt_time,
    is_number,
    md_table,
    one_line,
    status_word,
)
from soak.summary import PhaseReport


def _secs(value: Any) -> str:
    return f"{float(value):.2f} s" if is_number(value) else NA


def _count(value: int | None) -> str:
    return NA if value is None else str(value)


def _lat(phase: PhaseReport, stat: str) -> str:
    s = phase.latency
    return fmt_time(s.get(stat), "ms") if s is not None and s.count else NA


def _run_block(p: PhaseReport) -> list[tuple[str, str]]:
    """The seed's "Results" lines shared by sustained and readiness."""
    failed = sum(n for k, n in p.outcomes.items() if k != "ok") + p.drops
    rows = [
        ("Status", status_word(p.status)),
        ("Duration", _secs(p.duration_s)),
        ("Requests sent", str(p.sent)),
        ("Requests completed", str(p.completed)),
        ("Requests failed", str(failed)),
        ("Success rate", fmt_pct(p.success_ratio)),
        ("Throughput", f"{fmt_num(p.throughput, 2)} requests/second"),
        ("Latency (mean)", _lat(p, "mean")),
        ("Latency (p50)", _lat(p, "p50")),
        ("Latency (p95)", _lat(p, "p95")),
        ("Latency (p99)", _lat(p, "p99")),
    ]
    proc = p.process
    if proc is not None and proc.samples:
        rows += [
            ("Memory (mean)", fmt_mb(proc.rss_avg)),
            ("Memory (max)", fmt_mb(proc.rss_peak)),
            ("CPU (mean)", fmt_cpu(proc.cpu_avg)),
            ("CPU (max)", fmt_cpu(proc.cpu_peak)),
        ]
    return rows


def _kv(title: str, rows: Sequence[tuple[str, str]]) -> list[str]:
    return [title, "", md_table(("Metric", "Value"), rows), ""]


def sustained_section(reports: Sequence[PhaseReport]) -> list[str]:
    """The `sustained` phase's report.md section (`PhaseSpec.markdown`)."""
    lines: list[str] = []
    for p in reports:
        lines += _kv(f"## Sustained Load Results ({one_line(p.name)})", _run_block(p))
    return lines


def _timeline(points: Any) -> str:
    if not isinstance(points, list) or not points:
        return NA
    return " → ".join(f"{s} @{float(t):.1f}s" for t, s in points if is_number(t))


def breaker_section(reports: Sequence[PhaseReport]) -> list[str]:
    """The `breaker` phase's report.md section (`PhaseSpec.markdown`)."""
    lines: list[str] = []
    for p in reports:
        d = p.record(BreakerDetails)
        start, end = d.fault_start, d.fault_end
        lines += [f"## Circuit Breaker ({one_line(p.name)}) — {status_word(p.status)}", ""]
        lines.append(
            f"Fault on `{one_line(p.params.get('provider', NA))}` (HTTP 500 to every request) "
            f"from {_secs(start)} to {_secs(end)} after the phase start; times below are "
            "seconds from the phase start."
        )
        lines.append("")
        rows = []
        for provider, obs in sorted(d.observed.items()):
            rows.append(
                [
                    provider,
                    "observed (mock traces)",
                    obs.get("final") or NA,
                    _timeline(obs.get("timeline")),
                    obs.get("transitions", NA),
                    _secs(obs.get("time_to_open")),
                    _secs(obs.get("time_to_recover")),
                ]
            )
        reported = d.reported
        if isinstance(reported, dict):
            for provider, rep in sorted(reported.items()):
                rows.append(
                    [
                        provider,
                        "reported (gateway)",
                        rep.get("final") or NA,
                        _timeline(rep.get("timeline")),
                        rep.get("transitions", NA),
                        NA,
                        NA,
                    ]
                )
        else:
            rows.append(
                ["all", "reported (gateway)", str(reported or "not reported"), NA, NA, NA, NA]
            )
        heads = ("Provider", "Source", "Final state", "Timeline", "Transitions")
        lines += [md_table((*heads, "Time to open", "Time to recover"), rows), ""]
        errors = d.client_errors
        lines.append(
            f"Requests completed: {p.completed} of {p.sent}; client-visible errors before / "
            f"during / after the fault: {errors.get('before', NA)} / {errors.get('during', NA)}"
            f" / {errors.get('after', NA)}."
        )
        lines.append("")
    return lines


def failover_section(reports: Sequence[PhaseReport]) -> list[str]:
    """The `failover` phase's report.md section (`PhaseSpec.markdown`)."""
    lines: list[str] = []
    for p in reports:
        d = p.record(FailoverDetails)
        rows = [
            ("Mean failover time", fmt_auto(d.mean)),
            ("Min failover time", fmt_auto(d.min)),
            ("Max failover time", fmt_auto(d.max)),
            ("Successful failovers", f"{_count(d.failed_over)}/{_count(d.requests)}"),
            ("Timed (tried the primary first)", _count(d.timed)),
            ("Straight to the fallback (breaker open)", _count(d.direct)),
            ("Served by the primary", _count(d.served_by_primary)),
            ("Client-visible errors", _count(d.client_errors)),
        ]
        title = f"## Failover Time Results ({one_line(p.name)}) — {status_word(p.status)}"
        lines += _kv(title, rows)
    return lines


def memory_section(reports: Sequence[PhaseReport]) -> list[str]:
    """The `memory` phase's report.md section (`PhaseSpec.markdown`)."""
    lines: list[str] = []
    for p in reports:
        d = p.record(MemoryDetails)
        growth = d.growth
        increase = (
            d.final - d.initial if is_number(d.final) and is_number(d.initial) else None
        )
        slope = d.slope_mb_per_min
        rows = [
            ("Requests completed", f"{p.completed}/{p.sent}"),
            ("Samples (1 Hz)", _count(d.samples)),
            ("Initial memory", fmt_mb(d.initial)),
            ("Peak memory", fmt_mb(d.peak)),
            ("Final memory", fmt_mb(d.final)),
            ("Mean memory", fmt_mb(d.mean)),
            ("Memory increase", f"{fmt_mb(increase)} ({fmt_pct(growth, 1)})"),
            ("Peak / initial", f"{fmt_num(d.peak_ratio, 2)}x"),
            ("Trend after warm-up", f"{fmt_num(slope, 2)} MB/min" if is_number(slope) else NA),
        ]
        lines += _kv(
            f"## Memory Usage Results ({one_line(p.name)}) — {status_word(p.status)}", rows
        )
    return lines


def readiness_section(reports: Sequence[PhaseReport]) -> list[str]:
    """The `readiness` phase's report.md section (`PhaseSpec.markdown`)."""
    lines: list[str] = []
    for p in reports:
        lines += _kv(f"## Production Readiness Results ({one_line(p.name)})", _run_block(p))
        rows = []
        for c in p.checks:
            value, threshold, unit = check_parts(c)
            unit_text = "" if unit == "%" else f" {unit}"
            mark = "✓" if c.passed else "✗"
            criterion = f"{c.name} {c.op} {threshold}{unit_text}"
            rows.append((mark, criterion, f"{value}{unit_text}", c.tier or NA))
        d = p.record(ReadinessDetails)
        p50 = d.tiers.get("p50") or {}
        if p50:
            rows.append(
                (
                    "·",
                    "latency p50 (graded, no gate)",
                    fmt_time(p50.get("value"), "ms"),
                    p50.get("tier") or NA,
                )
            )
        lines += ["### Production Readiness Criteria", ""]
        lines += [md_table(("", "Criterion", "Value", "Tier"), rows), ""]
        verdict = d.verdict
        if verdict == "READY":
            lines.append("**Overall: ✓ READY FOR PRODUCTION**")
        else:
            lines.append(f"**Overall: ✗ {verdict or 'NOT READY'}**")
        lines.append("")
    return lines

