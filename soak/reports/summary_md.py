"""The GitHub Actions step summary: a compact verdict in `$GITHUB_STEP_SUMMARY`.

GitHub shows this markdown on the run's summary page. Our part is written once per run with
the final verdict; while a run is under way a partial one (headed INCOMPLETE, so a job killed
mid-run still says how far it got) is rewritten in place, never appended. What the file held
before the run (an earlier command of the same step) is kept: we own only the bytes from where
the file ended when the run began. Outside Actions (variable unset) nothing is written.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path

from soak.reports.comparison_md import summary_lines
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


def render_step_summary(run: RunReport, *, final: bool = True) -> str:
    """Compact markdown: verdict, comparison with a baseline, phases, overhead by both methods,
    failed checks, warnings. `final=False`: a run still under way, headed INCOMPLETE."""
    if final:
        icon = "✅" if run.passed else "❌"
        lines = [f"### {icon} llm-soak {overall_word(run)}: {one_line(run.target)}", ""]
    else:
        lines = [f"### ⏳ llm-soak INCOMPLETE: {one_line(run.target)}", ""]
        done = f"{len(run.phases)} phase report{'s' if len(run.phases) != 1 else ''} so far"
        lines += [f"> The run had not finished when this was written ({done}): no verdict yet."]
        lines.append("")
    lines += [f"kind `{run.kind}` · profile `{run.profile}` · run `{run.run_id}`", ""]
    lines += summary_lines(run.comparison)
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


class StepSummary:
    """Our part of the step summary file: from where the file ended when the run began."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            self.start = path.stat().st_size
        except OSError:
            self.start = 0

    @classmethod
    def from_env(cls, env: Mapping[str, str] = os.environ) -> StepSummary | None:
        target = env.get(ENV_VAR)
        return cls(Path(target)) if target else None

    def write(self, text: str) -> Path:
        """Replace our part with `text` (created 0666 less the umask, like any report file)."""
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o666)
        try:
            start = min(self.start, os.fstat(fd).st_size)  # someone may have truncated it
            os.ftruncate(fd, start)
            os.lseek(fd, start, os.SEEK_SET)
            data = text.encode("utf-8")
            while data:
                data = data[os.write(fd, data) :]
        finally:
            os.close(fd)
        return self.path


def write_step_summary(
    run: RunReport,
    env: Mapping[str, str] = os.environ,
    *,
    summary: StepSummary | None = None,
    final: bool = True,
) -> Path | None:
    """Write the run's summary into `summary` (default: the file `$GITHUB_STEP_SUMMARY` names,
    after what it holds now); None when there is nowhere to write."""
    summary = summary or StepSummary.from_env(env)
    if summary is None:
        return None
    return summary.write(render_step_summary(run, final=final))
