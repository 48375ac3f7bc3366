"""Markdown section of the streaming soak: token timing, what the gateway added, integrity,
goodput, and the gateway's memory and descriptors before and after the streams.

Reads the streaming `PhaseReport`'s distributions and its `StreamingDetails` (see
soak.phases.streaming and docs/streaming.md); anything missing shows as "—".
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from soak.phases.streaming import StreamingDetails
from soak.reports.formatting import NA, fmt_mb, fmt_num, fmt_pct, fmt_time, md_table
from soak.streaming import CLASSES
from soak.summary import PhaseReport

TIMING = (
    ("ttft", "TTFT"),
    ("itl", "inter-token gap (ITL, pooled)"),
    ("tpot", "TPOT"),
    ("e2e", "E2E"),
    ("added_ttft", "gateway-added TTFT"),
    ("added_last", "gateway-added time to last chunk"),
    ("added_tpot", "gateway-added TPOT"),
)
STATS = ("count", "p50", "p90", "p99", "max")


def _stat(summary: Any, stat: str) -> Any:
    if summary is None:
        return None
    return summary.get(stat) if isinstance(summary, dict) else getattr(summary, stat, None)


def timing_rows(phase: PhaseReport) -> list[list[str]]:
    rows = []
    for key, label in TIMING:
        summary = phase.distributions.get(key)
        if summary is None:
            continue
        count = _stat(summary, "count")
        cells = [fmt_time(_stat(summary, s), "ms", suffix=False) for s in STATS[1:]]
        rows.append([label, str(count if count is not None else NA), *cells])
    return rows


def phase_lines(phase: PhaseReport) -> list[str]:
    d = phase.record(StreamingDetails).streaming
    p = phase.params
    lines = [
        f"{d.get('streams', NA)} streams of {p.get('tokens', NA)} tokens (mock: first token "
        f"after {fmt_time(p.get('ttft'), 'ms')}, then one every "
        f"{fmt_time(p.get('inter_token'), 'ms')}; ~{fmt_num(p.get('stream_time'), 1)} s each).",
        "",
    ]
    rows = timing_rows(phase)
    if rows:
        lines += [md_table(("Stream timing (ms)", *STATS), rows), ""]
    integrity = d.get("integrity") or {}
    if integrity:
        seen = [[c, str(integrity.get(c, 0))] for c in CLASSES if integrity.get(c)]
        lines += [md_table(("Integrity", "streams"), seen), ""]
        lines.append(f"Whole: **{fmt_pct(d.get('whole_ratio'))}** of streams.")
    rate = fmt_num(d.get("request_rate"), 2)
    tokens_s = fmt_num(d.get("output_token_rate"), 1)
    lines.append(
        f"Goodput (met TTFT, TPOT and E2E bounds): **{fmt_num(d.get('goodput'), 2)} req/s** of "
        f"{rate} req/s successful; output {tokens_s} tokens/s; largest gap "
        f"{fmt_time(d.get('max_gap'), 'ms')}; {d.get('slow_gaps', NA)} gaps above twice the "
        "mock's inter-token delay."
    )
    flat = d.get("process")
    if flat:
        lines += [
            "",
            md_table(
                ("Gateway process", "before", "peak", "after"),
                [
                    [
                        "RSS",
                        fmt_mb(flat.get("rss_before")),
                        fmt_mb(flat.get("rss_peak")),
                        fmt_mb(flat.get("rss_after")),
                    ],
                    [
                        "open fds",
                        str(flat.get("fds_before", NA)),
                        str(flat.get("fds_peak", NA)),
                        str(flat.get("fds_after", NA)),
                    ],
                ],
            ),
        ]
    return [*lines, ""]


def streaming_section(reports: Sequence[PhaseReport]) -> list[str]:
    """`## Streaming` with one block per streaming phase run (`PhaseSpec.markdown`); nothing
    when none has its details."""
    phases = [p for p in reports if p.record(StreamingDetails).streaming]
    if not phases:
        return []
    lines = ["## Streaming", ""]
    for phase in phases:
        lines += phase_lines(phase)
    return lines
