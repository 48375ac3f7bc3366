"""The human report of a `soak once` run: the seed's results tables, plus verdicts and health.

Layout follows the seed load-test script (Processing Overhead, stress rounds, process stats,
Method, Notes) with what we add: both overhead methods side by side, every check with its
threshold and tier, the generator's own health, outcomes, errors and notes. Renders whatever is
there: a partial or aborted run still shows everything that was measured.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime

from soak.reports.breakdown_md import breakdown_section
from soak.reports.comparison_md import comparison_section
from soak.reports.formatting import (
    NA,
    STAT_LABELS,
    check_line,
    check_parts,
    concurrency,
    failed_checks,
    fmt_cpu,
    fmt_mb,
    fmt_num,
    fmt_pct,
    fmt_time,
    is_number,
    key_figures,
    md_table,
    one_line,
    overall_word,
    reasons_text,
    stat_value,
    status_word,
    untrusted_phases,
)
from soak.reports.gateway_md import gateway_section
from soak.results import Outcome
from soak.summary import LatencySummary, PhaseReport, RunReport

PER_REQUEST = "overhead_per_request"
PERCENTILE_DIFF = "overhead_percentile_diff"
_OVERHEAD_KEYS = (PER_REQUEST, PERCENTILE_DIFF)
_RUN_HEADERS = ("Actual RPS", "Duration", "Concurrent", "Success Rate")


def _when(ts: float) -> str:
    if not is_number(ts) or ts <= 0:
        return NA
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _secs(value: float | None) -> str:
    return f"{value:.1f}s" if is_number(value) else NA


def _stats(summary: LatencySummary | None, unit: str) -> list[str]:
    return [fmt_time(stat_value(summary, key), unit) for key, _ in STAT_LABELS]


def _run_cells(phase: PhaseReport) -> list[str]:
    return [
        fmt_num(phase.throughput, 1),
        _secs(phase.duration_s),
        concurrency(phase),
        fmt_pct(phase.success_ratio),
    ]


def _is_overhead(phase: PhaseReport) -> bool:
    return phase.kind == "overhead" or any(k in phase.distributions for k in _OVERHEAD_KEYS)


def _header(run: RunReport) -> list[str]:
    elapsed = run.finished_at - run.started_at if run.finished_at and run.started_at else None
    lines = [f"# llm-soak report: {one_line(run.target)} — {overall_word(run)}", ""]
    lines.append(
        md_table(
            ("Target", "Kind", "Profile", "Run ID", "Started", "Duration", "Result"),
            [
                (
                    run.target,
                    run.kind,
                    run.profile,
                    run.run_id,
                    _when(run.started_at),
                    _secs(elapsed),
                    overall_word(run),
                )
            ],
        )
    )
    if run.aborted or run.error:
        what = "Run aborted" if run.aborted else "Run error"
        lines += ["", f"> **{what}**: {one_line(run.error or 'no reason given')}"]
    for note in run.notes:
        lines += ["", f"> **Note**: {one_line(note)}"]
    bad = untrusted_phases(run)
    if bad:
        lines += ["", "> **⚠ UNTRUSTED RESULTS**: the load generator could not keep up, so"]
        lines.append("> these figures describe the tester, not the gateway.")
        for phase in bad:
            reasons = reasons_text(phase.generator)
            lines.append(f"> - **{one_line(phase.name)}**: {one_line(reasons)}")
    return lines


def _verdicts(run: RunReport) -> list[str]:
    lines = ["## Verdict", ""]
    if not run.phases:
        return [*lines, "No phase ran.", ""]
    rows = [
        (p.name, p.kind, status_word(p.status), _secs(p.duration_s), key_figures(p))
        for p in run.phases
    ]
    lines += [md_table(("Phase", "Kind", "Status", "Duration", "Key figures"), rows), ""]
    breaches = [(p, c) for p in run.phases for c in failed_checks(p)]
    if breaches:
        lines += ["**Failed checks**", ""]
        lines += [f"- FAIL {p.name}: {check_line(c)}" for p, c in breaches]
        lines.append("")
    return lines


def _overhead(run: RunReport) -> list[str]:
    phases = [p for p in run.phases if _is_overhead(p)]
    calibration = [p for p in run.phases if p.kind == "calibration"]
    if not phases and not calibration:
        return []
    many = len(phases) > 1
    stat_heads = tuple(label for _, label in STAT_LABELS)
    rows = []
    for p in phases:
        prefix = f"{p.name}: " if many else ""
        for key, label in (
            (PER_REQUEST, "Overhead per request (ours, gated)"),
            (PERCENTILE_DIFF, "Overhead percentile diff (seed, calibration subtracted)"),
        ):
            if key == PERCENTILE_DIFF and key not in p.distributions and p.kind != "overhead":
                continue  # only the overhead phase has a calibration to subtract
            rows.append([prefix + label, *_run_cells(p), *_stats(p.distributions.get(key), "µs")])
    lines = ["## Processing Overhead (µs)", ""]
    if rows:
        lines += [md_table(("Metric", *_RUN_HEADERS, *stat_heads), rows), ""]
    else:
        lines += ["No overhead phase ran.", ""]
    latency_rows = [
        [f"Calibration, direct to mock ({p.name})", *_run_cells(p), *_stats(p.latency, "ms")]
        for p in calibration
    ]
    latency_rows += [
        [f"Through gateway ({p.name})", *_run_cells(p), *_stats(p.latency, "ms")] for p in phases
    ]
    lines += ["### Calibration and through-gateway latency (ms)", ""]
    lines += [md_table(("Metric", *_RUN_HEADERS, *stat_heads), latency_rows), ""]
    return lines


def stress_section(phases: Sequence[PhaseReport]) -> list[str]:
    """The stress rounds' table (`PhaseSpec.markdown` of the stress phase)."""
    if not phases:
        return []
    heads = ("Round", "Status", "Target RPS", *_RUN_HEADERS, "Mock latency", "Sent")
    rows = []
    for p in phases:
        latency = p.params.get("latency")
        mock = fmt_time(latency, "ms") if is_number(latency) else NA
        head = [p.name, status_word(p.status), fmt_num(p.target_rate, 1), *_run_cells(p)]
        rows.append([*head, mock, str(p.sent), *_stats(p.latency, "ms")])
    table = md_table((*heads, *(label for _, label in STAT_LABELS)), rows)
    return ["## Stress Rounds (ms)", "", table, ""]


def _other_latencies(run: RunReport) -> list[str]:
    rows = []
    for p in run.phases:
        if p.kind not in ("calibration", "stress") and not _is_overhead(p) and p.latency:
            rows.append([p.name, "latency", p.latency.count, *_stats(p.latency, "ms")])
        for key, summary in sorted(p.distributions.items()):
            if key not in _OVERHEAD_KEYS:
                rows.append([p.name, key, summary.count, *_stats(summary, "ms")])
    if not rows:
        return []
    heads = ("Phase", "Distribution", "Count", *(label for _, label in STAT_LABELS))
    return ["## Other Latencies (ms)", "", md_table(heads, rows), ""]


def _process(run: RunReport) -> list[str]:
    rows = []
    for p in run.phases:
        s = p.process
        if s is None or not s.samples:
            continue  # no sample taken: nothing measured, no zeros pretending otherwise
        cpu = [fmt_cpu(s.cpu_avg), fmt_cpu(s.cpu_peak)]
        rss = [fmt_mb(s.rss_avg), fmt_mb(s.rss_peak), fmt_mb(s.rss_initial), fmt_mb(s.rss_final)]
        rows.append([p.name, s.samples, *cpu, *rss, s.fds_peak, s.threads_peak])
    if not rows:
        return []
    heads = ("Phase", "Samples", "CPU Avg", "CPU Peak", "RSS Avg", "RSS Peak")
    heads += ("RSS Initial", "RSS Final", "FDs Peak", "Threads Peak")
    return ["## Gateway Process Stats", "", md_table(heads, rows), ""]


def _checks(run: RunReport) -> list[str]:
    lines = ["## Checks", ""]
    heads = ("Check", "Value", "Op", "Threshold", "Unit", "Result", "Tier")
    judged = [p for p in run.phases if p.checks]
    if not judged:
        return [*lines, "No checks were evaluated.", ""]
    for p in judged:
        rows = []
        for c in p.checks:
            value, threshold, unit = check_parts(c)
            rows.append((c.name, value, c.op, threshold, unit, _pf(c.passed), c.tier or NA))
        title = f"### {one_line(p.name)} — {status_word(p.status)}"
        lines += [title, "", md_table(heads, rows), ""]
    return lines


def _pf(passed: bool) -> str:
    return "PASS" if passed else "FAIL"


def _generator(run: RunReport) -> list[str]:
    rows = []
    for p in run.phases:
        g = p.generator
        if g is None:
            continue
        lags = [fmt_time(g.send_lag_p99, "ms"), fmt_time(g.loop_lag_max, "ms")]
        trusted = "yes" if g.trusted else "**NO**"
        why = reasons_text(g) if g.reasons else NA
        steal = NA if g.host_steal is None else fmt_pct(g.host_steal, 1)
        rows.append([p.name, trusted, g.loop or NA, *lags, fmt_pct(g.cpu_ratio, 1), g.drops, steal,
                     why])  # fmt: skip
    if not rows:
        return []
    heads = ("Phase", "Trusted", "Loop", "Send lag p99", "Loop lag max", "Generator CPU", "Drops",
             "Host steal")  # fmt: skip
    return ["## Generator Health", "", md_table((*heads, "Reasons"), rows), ""]


def _outcomes(run: RunReport) -> list[str]:
    seen = {k for p in run.phases for k in p.outcomes}
    if not run.phases:
        return []
    order = [o.value for o in Outcome if o.value in seen or o is Outcome.OK]
    order += sorted(seen - set(order))
    rows = [
        [p.name, p.sent, p.completed, p.drops, *(p.outcomes.get(k, 0) for k in order)]
        for p in run.phases
    ]
    heads = ("Phase", "Sent", "Completed", "Dropped", *order)
    return ["## Outcomes", "", md_table(heads, rows), ""]


def _settings(run: RunReport) -> list[str]:
    rows = []
    for p in run.phases:
        params = ", ".join(f"{k}={v}" for k, v in sorted(p.params.items()))
        rows.append([p.name, fmt_num(p.target_rate, 1), params or NA])
    if not rows:
        return []
    return ["## Phase Settings", "", md_table(("Phase", "Target RPS", "Settings"), rows), ""]


def _errors_notes(run: RunReport) -> list[str]:
    items = []
    if run.error:
        items.append(f"- **run**: {one_line(run.error, 2000)}")
    for p in run.phases:
        if p.error:
            items.append(f"- **{p.name}** ({status_word(p.status)}): {one_line(p.error, 2000)}")
        items += [f"- {p.name}: {one_line(note, 2000)}" for note in p.notes]
    if not items:
        return []
    return ["## Errors and Notes", "", *items, ""]


METHOD = """## Method

- **Calibration**: load straight to the mock provider (no gateway) at the overhead phase's rate,
  duration and mock latency: the tester + loopback + mock baseline.
- **Overhead, per request (ours, gated)**: for every request, client latency from the actual send
  minus the mock's own service time for that request (reported by the mock in its answer). This is
  a true distribution of what the gateway adds, free of the mock's jitter; the verdict uses it.
- **Overhead, percentile diff (the seed's method, for comparison)**: percentile of the latency
  through the gateway minus the same percentile of the calibration run. It is not a distribution
  (percentiles do not subtract), can be negative, and includes run-to-run noise; shown so results
  compare with the seed's published figures.
- **Stress**: the configured rate at a long mock latency (~rate × latency requests in flight),
  in rounds separated by an idle gap; every round must succeed.
- **Breaker, observed**: in a sliding window of client requests, the share that still attempted
  the faulted provider (the mock's traces): all → CLOSED, none → OPEN, a trickle of probes →
  HALF_OPEN. *Reported*: the gateway's own state (LiteLLM's `litellm_deployment_state`).
- **Failover time**: per request, from its first attempt at the primary to the end of the
  fallback's successful answer, both on the mock's clock (docs/resilience.md).
- **Memory trend**: least-squares slope of the gateway's RSS after the warm-up, so a slow leak
  fails even when growth and peak ratios pass.
- **Open loop**: requests are due on a fixed schedule whatever the gateway does; latency counts
  from the intended start, so queueing in the tester or the gateway is never hidden. Requests
  over the in-flight cap are dropped and counted, never queued.

## Notes

- Overhead values are in microseconds (µs); latencies in milliseconds (ms); data files keep
  seconds.
- CPU is percent of one core; RSS is in MB (2^20 bytes).
- A run whose generator health says "NO" measured the tester's limits: do not compare it.
- "—" means not measured.

---
*Generated by llm-soak*
"""


PhaseSection = Callable[[Sequence[PhaseReport]], list[str]]
"""A phase's own report.md section (`PhaseSpec.markdown`), given that phase's reports."""


def render_markdown(run: RunReport, sections: Mapping[str, PhaseSection] | None = None) -> str:
    """The full markdown report of a run; `sections` (phase kind → renderer, in plan order:
    `soak.phases.markdown_sections()`) add each phase's own section after the overhead
    tables and before the gateway's own view and the breakdowns."""
    lines = [*_header(run), "", *_verdicts(run), *comparison_section(run.comparison)]
    lines += _overhead(run)
    for kind, render in (sections or {}).items():
        reports = [p for p in run.phases if p.kind == kind]
        if reports:
            lines += render(reports)
    for section in (gateway_section, breakdown_section):
        lines += section(run)
    for section in (_other_latencies, _process, _checks, _generator, _outcomes, _settings,
                    _errors_notes):  # fmt: skip
        lines += section(run)
    return "\n".join(lines) + "\n" + METHOD
