"""Number and verdict formatting shared by every report, so all of them say the same thing.

Data is in base units (seconds, ratios 0..1, bytes, requests per second); these helpers turn
it into what a reader expects: µs for overhead, ms for latencies, percent for ratios, MB for
memory. `None` and non-finite values always render as "—" (nothing was measured).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

from soak.summary import Check, GeneratorHealth, LatencySummary, PhaseReport, RunReport, Status

NA = "—"

_SCALE = {"µs": 1e6, "ms": 1e3, "s": 1.0}
_DECIMALS = {"µs": 1, "ms": 2, "s": 2}

STATUS_WORD = {
    Status.PASSED: "PASS",
    Status.FAILED: "FAIL",
    Status.ERROR: "ERROR",
    Status.BASELINE: "BASELINE",
    Status.SKIPPED: "SKIP",
}

STAT_LABELS = (
    ("min", "Min"),
    ("mean", "Mean"),
    ("p50", "P50"),
    ("p90", "P90"),
    ("p95", "P95"),
    ("p99", "P99"),
    ("max", "Max"),
)


def is_number(value: object) -> bool:
    """True for a finite int/float (bools excluded): something worth printing as a figure."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return False
    return math.isfinite(value)


def pick_unit(seconds: float | None) -> str:
    """The time unit a human would read this value in: µs below 1 ms, ms below 1 s, else s."""
    if not is_number(seconds):
        return "ms"
    size = abs(float(seconds))
    if size < 1e-3:
        return "µs"
    if size < 1.0:
        return "ms"
    return "s"


def fmt_time(seconds: float | None, unit: str, suffix: bool = True) -> str:
    """Seconds in a fixed unit (µs 1 decimal, ms and s 2 decimals), e.g. `1234.5 µs`."""
    if not is_number(seconds):
        return NA
    text = f"{float(seconds) * _SCALE[unit]:.{_DECIMALS[unit]}f}"
    return f"{text} {unit}" if suffix else text


def fmt_auto(seconds: float | None) -> str:
    """Seconds in the unit `pick_unit` chooses; for prose, not table columns."""
    return fmt_time(seconds, pick_unit(seconds))


def fmt_pct(ratio: float | None, decimals: int = 2) -> str:
    """A 0..1 ratio as a percentage, e.g. `99.50%`."""
    if not is_number(ratio):
        return NA
    return f"{float(ratio) * 100:.{decimals}f}%"


def fmt_num(value: float | None, decimals: int = 1) -> str:
    if not is_number(value):
        return NA
    return f"{float(value):.{decimals}f}"


def fmt_mb(nbytes: float | None) -> str:
    """Bytes as MB (2^20, as the seed's `ps` RSS / 1024 figures)."""
    if not is_number(nbytes):
        return NA
    return f"{float(nbytes) / (1024 * 1024):.1f} MB"


def fmt_cpu(percent: float | None) -> str:
    """CPU in percent of one core (psutil's convention; 200% = two cores busy)."""
    if not is_number(percent):
        return NA
    return f"{float(percent):.1f}%"


def stat_value(summary: LatencySummary | None, stat: str) -> float | None:
    if summary is None or not summary.count:
        return None  # an empty distribution measured nothing: show "—", not zeros
    try:
        return summary.get(stat)
    except (AttributeError, TypeError, ValueError):
        return None


_TWO_DECIMALS = frozenset({"req/s", "x", "MB/min"})
"""Units of rates and ratios that read best with two decimals (9.98 req/s, 1.31x)."""


def check_parts(check: Check) -> tuple[str, str, str]:
    """(value, threshold, unit) of a check in one display unit, so the two compare at a glance."""
    unit = check.unit or ""
    if unit == "s":
        shown = pick_unit(check.threshold if is_number(check.threshold) else check.value)
        return (
            fmt_time(check.value, shown, suffix=False),
            fmt_time(check.threshold, shown, suffix=False),
            shown,
        )
    if unit == "ratio":
        return fmt_pct(check.value).rstrip("%"), fmt_pct(check.threshold).rstrip("%"), "%"
    if unit == "bytes":
        return fmt_mb(check.value)[:-3], fmt_mb(check.threshold)[:-3], "MB"
    if unit in _TWO_DECIMALS:
        return fmt_num(check.value, 2), fmt_num(check.threshold, 2), unit
    return _plain(check.value), _plain(check.threshold), unit


def _plain(value: float | None) -> str:
    if not is_number(value):
        return NA
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_line(check: Check) -> str:
    """One line for a check, e.g. `overhead_p99 = 150.00 ms (limit < 100.00 ms)`."""
    value, threshold, unit = check_parts(check)
    unit_text = f" {unit}" if unit and unit != "%" else unit
    return f"{check.name} = {value}{unit_text} (limit {check.op} {threshold}{unit_text})"


def failed_checks(phase: PhaseReport) -> list[Check]:
    return [c for c in phase.checks if not c.passed]


def status_word(status: Status | str) -> str:
    try:
        return STATUS_WORD[Status(status)]
    except ValueError:
        return str(status).upper()


def overall_word(run: RunReport) -> str:
    if run.aborted:
        return "FAIL (aborted)"
    return "PASS" if run.passed else "FAIL"


def concurrency(phase: PhaseReport) -> str:
    """In-flight requests of a phase: the configured concurrency, else ~rate × mock latency.

    Not `max_inflight`: that is the generator's cap, not what the phase put in flight.
    """
    params = phase.params or {}
    if is_number(params.get("concurrency")):
        return fmt_num(params["concurrency"], 0)
    rate = params.get("rate", phase.target_rate)
    latency = params.get("latency")
    if is_number(rate) and is_number(latency) and rate and latency:
        return f"~{float(rate) * float(latency):.0f}"
    return NA


def key_figures(phase: PhaseReport) -> str:
    """The few numbers that say how a phase went, for verdict tables and progress lines."""
    if phase.status == Status.SKIPPED and not phase.sent:
        return "skipped" + (f": {phase.error}" if phase.error else "")
    parts = [f"{phase.sent} sent", f"{fmt_pct(phase.success_ratio)} ok"]
    parts.append(f"{fmt_num(phase.throughput)} rps")
    if phase.latency is not None:
        parts.append(f"p99 {fmt_auto(phase.latency.p99)}")
    overhead = phase.distributions.get("overhead_per_request")
    if overhead is not None:
        parts.append(f"overhead p99 {fmt_auto(overhead.p99)}")
    headline = phase.details.headline() if phase.details is not None else None
    if headline:
        parts.append(one_line(headline))  # readiness: READY / NOT READY
    if phase.drops:
        parts.append(f"{phase.drops} dropped")
    failed = failed_checks(phase)
    if failed:
        parts.append("failed: " + ", ".join(c.name for c in failed))
    if phase.error:
        parts.append(f"error: {one_line(phase.error)}")
    return " · ".join(parts)


def one_line(text: object, limit: int = 300) -> str:
    """Collapse whitespace so free text cannot break a table row or an XML attribute."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def md_cell(value: object) -> str:
    return one_line(value, limit=500).replace("|", "\\|")


def md_table(headers: Sequence[str], rows: Iterable[Sequence[object]]) -> str:
    """A GitHub-flavoured markdown table; pipes and newlines in cells are neutralised."""
    lines = ["| " + " | ".join(md_cell(h) for h in headers) + " |"]
    lines.append("|" + "|".join("---" for _ in headers) + "|")
    for row in rows:
        lines.append("| " + " | ".join(md_cell(c) for c in row) + " |")
    return "\n".join(lines)


def untrusted_phases(run: RunReport) -> list[PhaseReport]:
    return [p for p in run.phases if p.generator is not None and not p.generator.trusted]


def reasons_text(health: GeneratorHealth | None) -> str:
    """Why the generator distrusts its numbers, as one line."""
    if health is None:
        return NA
    return one_line("; ".join(str(r) for r in health.reasons) or "no reason recorded")
