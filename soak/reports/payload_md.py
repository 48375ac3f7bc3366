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
