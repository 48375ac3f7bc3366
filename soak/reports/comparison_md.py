"""The comparison with a baseline run, in markdown: report.md, the step summary, `soak compare`.

One row per phase and statistic: baseline, this run, the change with its confidence interval,
the change as a share of the baseline, the tolerance and the verdict; gated rows (a regression
fails the run) are marked. Notes say what could not be compared and why.
"""

from __future__ import annotations

from soak.baseline import NOT_COMPARED, Comparison, PhaseComparison, StatComparison
from soak.compare import IMPROVED, REGRESSED
from soak.reports.formatting import fmt_time, md_table, one_line

_ICON = {REGRESSED: "▲", IMPROVED: "▼"}


def _ms(seconds: float, sign: bool = False) -> str:
    text = f"{seconds * 1e3:+.2f}" if sign else f"{seconds * 1e3:.2f}"
    return text.replace("-", "−")


def change_text(s: StatComparison) -> str:
    """`+2.01 ms [+1.95, +2.07]`: the change and its interval, in ms."""
    return f"{_ms(s.diff, True)} ms [{_ms(s.low, True)}, {_ms(s.high, True)}]"


def verdict_text(s: StatComparison) -> str:
    word = s.verdict.upper() if s.failed else s.verdict
    return f"{_ICON.get(s.verdict, '')} {word}".strip()


def headline(c: Comparison) -> str:
    """One line: the overall verdict and the gated statistics that decided it."""
    failed = [f"{p.phase} {s.stat} {change_text(s)}" for p in c.phases for s in p.stats if s.failed]
    if failed:
        return f"regressed beyond tolerance: {'; '.join(failed)}"
    gated = [s for p in c.phases if p.gated for s in p.stats if s.gated]
    shown = "; ".join(f"{s.stat} {change_text(s)}" for s in gated)
    return f"{c.verdict}" + (f" (gated: {shown})" if shown else "")


def _rows(p: PhaseComparison) -> list[list[str]]:
    rows = []
    for s in p.stats:
        rel = f"{s.relative * 100:+.0f}%".replace("-", "−") if s.relative is not None else "—"
        rows.append([
            p.phase if s is p.stats[0] else "", f"{s.stat}{' (gate)' if s.gated else ''}",
            _ms(s.baseline) + (f" (run {s.baseline_run})" if p.baseline_runs > 1 else ""),
            _ms(s.current) + (f" (run {s.current_run})" if p.current_runs > 1 else ""),
            change_text(s), rel, f"±{_ms(s.tolerance)}",
            verdict_text(s),
        ])  # fmt: skip
    return rows


def _runs(p: PhaseComparison) -> str:
    if p.baseline_runs == p.current_runs == 1:
        return ""
    return f" in {p.baseline_runs} vs {p.current_runs} runs"


def comparison_section(c: Comparison | None, *, heading: str = "##") -> list[str]:
    """The full section: intro, one table over every compared phase, notes."""
    if c is None:
        return []
    level = f"{int(c.confidence * 100)}%" if c.confidence * 100 % 1 == 0 else f"{c.confidence:g}"
    lines = [f"{heading} Compared with baseline run `{one_line(c.baseline_run_id)}`", ""]
    source = f" ({one_line(c.baseline_source)})" if c.baseline_source else ""
    lines.append(
        f"Per-request overhead of each phase against the baseline{source}: current − baseline,"
        f" with the {level} bootstrap interval ({c.resamples:,} draws per statistic). A"
        " statistic regressed (improved) when its whole interval lies above (below) its"
        " tolerance; `(gate)` marks statistics whose regression fails the run."
    )
    lines += ["", f"**Verdict: {one_line(headline(c))}**", ""]
    rows = [r for p in c.phases for r in _rows(p)]
    if rows:
        heads = ("Phase", "Statistic", "Baseline (ms)", "This run (ms)", "Change (ms) [interval]",
                 "Relative", "Tolerance (ms)", "Verdict")  # fmt: skip
        lines += [md_table(heads, rows), ""]
    counts = [f"{p.phase}: {p.baseline_count} vs {p.current_count} requests{_runs(p)}"
              for p in c.phases if p.stats]  # fmt: skip
    if counts:
        lines += [f"Samples: {'; '.join(counts)}.", ""]
    if any(p.baseline_runs > 1 or p.current_runs > 1 for p in c.phases):
        lines += [
            "A repeated phase (`--repeat`) is judged, per statistic, by each side's run with the"
            " least value of it (`(run N)`): other work on a shared machine only adds latency,"
            " so a burst slows some runs and a regression all.",
            "",
        ]
    notes = [*c.notes, *(f"{p.phase}: {n}" for p in c.phases for n in p.notes)]
    if notes:
        lines += [f"- {one_line(n)}" for n in notes]
        lines.append("")
    return lines


def summary_lines(c: Comparison | None) -> list[str]:
    """The compact version for the step summary: the gated phases' rows and the notes."""
    if c is None:
        return []
    lines = [f"**vs baseline `{one_line(c.baseline_run_id)}`: {one_line(headline(c))}**", ""]
    rows = []
    for p in c.phases:
        if not p.gated:
            continue
        for s in p.stats:
            rows.append([f"{p.phase} {s.stat}{' (gate)' if s.gated else ''}",
                         fmt_time(s.baseline, "ms"), fmt_time(s.current, "ms"), change_text(s),
                         verdict_text(s)])  # fmt: skip
    if rows:
        lines += [md_table(("Overhead", "Baseline", "This run", "Change [interval]", "Verdict"),
                           rows), ""]  # fmt: skip
    others = [p for p in c.phases if not p.gated and p.verdict not in (NOT_COMPARED,)]
    if others:
        shown = ", ".join(f"{p.phase}: {p.verdict}" for p in others)
        lines += [f"Other phases (not gated): {shown}.", ""]
    notes = [*c.notes, *(f"{p.phase}: {n}" for p in c.phases if p.gated for n in p.notes)]
    lines += [f"> {one_line(n)}" for n in notes]
    if notes:
        lines.append("")
    return lines
