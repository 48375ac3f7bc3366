"""Markdown section: what the gateway said about itself, next to what the mock saw, per phase.

Reads `PhaseReport.gateway_said` (soak.gateway.said) and `params["gateway_reported"]` (the
gateway's own overhead histogram over the phase, soak.phases.base); renders nothing when no
phase has either (a gateway that says nothing about itself, e.g. nginx).
"""

from __future__ import annotations

from typing import Any

from soak.reports.formatting import NA, fmt_time, is_number, md_table
from soak.summary import RunReport

HEADERS = (
    "phase",
    "gateway says served",
    "mock's marker",
    "agree",
    "disagree",
    "gateway retries",
    "reported state after",
    "own overhead p50 / p99",
)


def _counts(counts: Any) -> str:
    if not isinstance(counts, dict) or not counts:
        return NA
    return ", ".join(f"{name} {n}" for name, n in counts.items())


def _own(reported: Any) -> str:
    if not isinstance(reported, dict):
        return NA
    p50, p99 = reported.get("overhead_p50"), reported.get("overhead_p99")
    if not (is_number(p50) or is_number(p99)):
        return NA
    return f"{fmt_time(p50, 'ms')} / {fmt_time(p99, 'ms')}"


def _retries(retries: Any, requests: Any) -> str:
    if retries is None:
        return NA
    return f"{retries} on {requests} req" if retries else "0"


def gateway_section(run: RunReport) -> list[str]:
    """`## What the gateway said` with one row per phase that has something to show."""
    rows = []
    disagreeing = []
    for p in run.phases:
        said = p.gateway_said
        reported = p.params.get("gateway_reported")
        if not isinstance(said, dict) and not isinstance(reported, dict):
            continue
        said = said if isinstance(said, dict) else {}
        if said.get("disagree"):
            disagreeing.append(p.name)
        retries = said.get("retries")
        rows.append(
            [
                p.name,
                _counts(said.get("said")),
                _counts(said.get("saw")),
                str(said.get("agree", NA)),
                str(said.get("disagree", NA)),
                _retries(retries, said.get("retried_requests")),
                _counts(said.get("reported_state")),
                _own(reported),
            ]
        )
    if not rows:
        return []
    lines = ["## What the gateway said", "", md_table(HEADERS, rows), ""]
    if disagreeing:
        lines += [
            f"**Disagreement** in {', '.join(disagreeing)}: the gateway named another provider "
            "than the one whose marker came back (see the phase notes).",
            "",
        ]
    return lines
