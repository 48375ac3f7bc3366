"""report.md: the payload phase's steps (overhead against prompt and answer size), its slopes,
the bytes the gateway passed on, the usage check and the per-model / per-key breakdown."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from soak.phases.payload import PayloadDetails
from soak.reports.breakdown_md import breakdown_tables
from soak.summary import PhaseReport


def _ms(value: float | None) -> str:
    return "–" if value is None else f"{value * 1000:.2f}"


def _size(n: int) -> str:
    return f"{n // 1024} KB" if n >= 1024 and n % 1024 == 0 else f"{n} B"


def _bytes(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def payload_section(reports: Sequence[PhaseReport]) -> list[str]:
    """One table per payload report: a row per step, then the slopes and breakdowns."""
    out: list[str] = []
    for report in reports:
        d = report.record(PayloadDetails)
        steps = d.steps
        if not steps:
            continue
        out += [
            "### Overhead against payload size",
            "",
            "| prompt | answer tokens | overhead p50 ms | p90 | p99 | floor p50 ms | floor p99 |"
            " gateway CPU ms/request | bytes sent | bytes at the mock | usage wrong |",
            "|---|---|---|---|---|---|---|---|---|---|---|",
        ]
        for s in steps:
            usage = s.get("usage") or {}
            wrong = (f"{usage.get('prompt_wrong', 0) + usage.get('completion_wrong', 0)}"
                     f" / {usage.get('compared', 0)}") if usage else "–"  # fmt: skip
            cpu = s.get("cpu_s_per_request")
            out.append(
                f"| {_size(s['prompt_bytes'])} | {s['answer_tokens']} | {_ms(s.get('p50'))} |"
                f" {_ms(s.get('p90'))} | {_ms(s.get('p99'))} | {_ms(s.get('floor_p50'))} |"
                f" {_ms(s.get('floor_p99'))} | {_ms(cpu)} | {_bytes(s.get('sent_bytes'))} |"
                f" {_bytes(s.get('received_bytes'))} | {wrong} |"
            )
        out += ["", (
            f"Slope of the p50 overhead over the prompt sizes: {_ms(d.slope_s_per_100kb)}"
            f" ms per 100 KB through the gateway, {_ms(d.floor_slope_s_per_100kb)} straight"
            f" to the mock (the tester's own floor), {_ms(d.net_slope_s_per_100kb)} net."
        ), ""]
        out += _breakdowns(steps)
    return out


def _breakdowns(steps: list[dict[str, Any]]) -> list[str]:
    top = max(steps, key=lambda s: s["prompt_bytes"])
    return breakdown_tables(top.get("breakdown") or {}, f"at {_size(top['prompt_bytes'])}")


def payload_plot(phase: PhaseReport) -> str | None:
    """report.html: overhead p50 / p99 through the gateway and the floor's p50 (ms) against the
    prompt size (KB), over the prompt steps; nginx-like gateways give lines parallel to the
    floor."""
    from soak.reports.svgplot import Series, line_plot

    if not isinstance(phase.details, PayloadDetails) or not phase.details.steps:
        return None
    steps = phase.details.steps
    first = steps[0]["answer_tokens"]
    rows = [s for s in steps if s["answer_tokens"] == first]
    rows.sort(key=lambda s: s["prompt_bytes"])
    series = []
    for key, name in (("p50", "gateway p50"), ("p99", "gateway p99"), ("floor_p50", "floor p50")):
        points = [(s["prompt_bytes"] / 1024, s[key] * 1e3) for s in rows if s.get(key) is not None]
        labels = [f"{x:g} KB: {y:.2f} ms" for x, y in points]
        if points:
            series.append(Series(name, points, True, labels))
    slope = phase.details.slope_s_per_100kb
    title = "Overhead against prompt size" + (
        f" (slope {slope * 1e3:.2f} ms per 100 KB)" if slope is not None else "")
    return line_plot(series, title=title, x_label="prompt (KB)",
                     y_label="per-request overhead (ms)") if series else None  # fmt: skip
