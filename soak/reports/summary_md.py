"""The GitHub Actions step summary: a compact verdict appended to `$GITHUB_STEP_SUMMARY`.

GitHub shows this markdown on the run's summary page. Several steps may write to the same
file, so we append and never truncate; outside Actions (variable unset) nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from soak.reports.formatting import (
    STAT_LABELS,
    check_line,
    failed_checks,
    fmt_time,
    key_figures,
    md_table,
    one_line,
    overall_word,
    reasons_text,
    stat_value,
    status_word,
    untrusted_phases,
)
from soak.summary import RunReport

ENV_VAR = "GITHUB_STEP_SUMMARY"
_OVERHEAD_STATS = [(k, label) for k, label in STAT_LABELS if k not in ("min", "max")]
_METHODS = (
    ("overhead_per_request", "per request (gated)"),
    ("overhead_percentile_diff", "percentile diff (seed)"),
)


def render_step_summary(run: RunReport) -> str:
    """Compact markdown: verdict, phases, overhead by both methods, failed checks, warnings."""
    icon = "✅" if run.passed else "❌"
    lines = [f"### {icon} llm-soak {overall_word(run)}: {one_line(run.target)}", ""]
    lines += [f"kind `{run.kind}` · profile `{run.profile}` · run `{run.run_id}`", ""]
    if run.aborted or run.error:
        lines += [f"> **Run {'aborted' if run.aborted else 'error'}**: {one_line(run.error or '')}"]
        lines.append("")
    for phase in untrusted_phases(run):
        reasons = reasons_text(phase.generator)
        lines += [f"> **⚠ UNTRUSTED** {phase.name}: {one_line(reasons)}", ""]
    if run.phases:
        rows = [(p.name, status_word(p.status), key_figures(p)) for p in run.phases]
        lines += [md_table(("Phase", "Status", "Key figures"), rows), ""]
    rows = []
    for p in run.phases:
        for key, label in _METHODS:
            summary = p.distributions.get(key)
            if summary is not None:
                stats = [fmt_time(stat_value(summary, s), "µs") for s, _ in _OVERHEAD_STATS]
                rows.append([f"{p.name}: {label}", *stats])
    if rows:
        heads = ("Overhead (µs)", *(label for _, label in _OVERHEAD_STATS))
        lines += [md_table(heads, rows), ""]
    breaches = [f"- FAIL {p.name}: {check_line(c)}" for p in run.phases for c in failed_checks(p)]
    if breaches:
        lines += ["**Failed checks**", "", *breaches, ""]
    return "\n".join(lines) + "\n"


def write_step_summary(run: RunReport, env: Mapping[str, str] = os.environ) -> Path | None:
    """Append the summary to the file `$GITHUB_STEP_SUMMARY` names; None when it is unset."""
    target = env.get(ENV_VAR)
    if not target:
        return None
    path = Path(target)
    with path.open("a", encoding="utf-8") as out:
        out.write(render_step_summary(run))
    return path
