"""report.md: per-model and per-key results of each phase that ran a workload mix.

Read from `PhaseReport.breakdown` (`soak.breakdown`): a table per model mix and per key mix
(the worst keys only, with counts over every key), so one slow route or one costly tenant
shows under an aggregate that passes.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from soak.reports.formatting import fmt_time, md_table
from soak.summary import RunReport


def _ms(value: float | None) -> str:
    return fmt_time(value, "ms", suffix=False)


def breakdown_tables(parts: Mapping[str, Any], where: str) -> list[str]:
    """The tables of one breakdown; `where` says which load it describes."""
    out: list[str] = []
    for what in ("model", "key"):
        rows = parts.get(what)
        if not rows:
            continue
        title = f"Per {what} {where} (names from the config)"
        counts = parts.get("keys") if what == "key" else None
        if counts:
            listed = f"the {len(rows)} worst" if len(rows) < counts["keys"] else "worst first"
            title += f"; {counts['keys']} keys, {counts['failing']} with a failed request, {listed}"
        cells = [
            (name, str(r["requests"]), f"{r['success_ratio']:.3f}", _ms(r["overhead_p50"]),
             _ms(r["overhead_p99"]))
            for name, r in rows.items()
        ]  # fmt: skip
        table = md_table((what, "requests", "success", "overhead p50 ms", "p99 ms"), cells)
        out += [f"{title}:", "", table, ""]
    return out


def breakdown_section(run: RunReport) -> list[str]:
    """`## Per Model and Key`: every phase (but payload, which shows its own per step)."""
    lines: list[str] = []
    for phase in run.phases:
        parts = phase.breakdown if phase.kind != "payload" else None
        if parts:
            lines += breakdown_tables(parts, f"in {phase.name}")
    return ["## Per Model and Key", "", *lines] if lines else []
