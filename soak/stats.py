"""Exact report statistics: HDR-histogram percentiles and both overhead methods.

Reports quote percentiles from an HDR histogram of every value (microseconds, 3 significant
digits, up to one hour), never interpolated from coarse Prometheus buckets; mean, min and max
are exact. Overhead is computed two ways: per request (client latency − the mock's own service
time, a true distribution of what the path added) and the seeds' way (percentile of the run
through the gateway − the same percentile of the calibration run direct to the mock).
The only module importing hdrhistogram.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable
from typing import Any

from hdrh.histogram import HdrHistogram

from soak.compare import Histogram
from soak.engine import LoadRun
from soak.results import Result
from soak.summary import LatencySummary, NegativeOverhead

US = 1_000_000
HIGHEST_US = 3600 * US
"""Values above one hour are recorded as one hour (and counted in `Distribution.clamped`)."""
SIGNIFICANT_DIGITS = 3
PERCENTILES = (50.0, 90.0, 95.0, 99.0)
DIFF_STATS = ("mean", "p50", "p90", "p95", "p99", "min", "max")


class Distribution:
    """Values in seconds recorded into an HDR histogram, with exact count, sum, min and max.

    Negative values (clock skew between tester and mock, a mis-set marker) are recorded as 0
    and counted in `clamped`, so they show up instead of silently shifting the percentiles.
    """

    __slots__ = ("_hist", "_max", "_min", "_pending", "_sum", "clamped", "count")

    def __init__(self) -> None:
        self._hist = HdrHistogram(1, HIGHEST_US, SIGNIFICANT_DIGITS)
        self._pending: Counter[int] = Counter()
        self.count = 0
        self.clamped = 0
        self._sum = 0.0
        self._min = math.inf
        self._max = -math.inf

    def record(self, seconds: float) -> None:
        if not math.isfinite(seconds):
            raise ValueError(f"latency {seconds!r} must be a finite number of seconds")
        if seconds < 0:
            self.clamped += 1
            seconds = 0.0
        elif seconds * US > HIGHEST_US:
            self.clamped += 1
            seconds = HIGHEST_US / US
        self.count += 1
        self._sum += seconds
        self._min = min(self._min, seconds)
        self._max = max(self._max, seconds)
        self._pending[round(seconds * US)] += 1

    def extend(self, values: Iterable[float]) -> Distribution:
        for v in values:
            self.record(v)
        return self

    def summary(self) -> LatencySummary | None:
        """Mean/min/max exact, percentiles from the histogram clamped into [min, max]."""
        if not self.count:
            return None
        hist = self._hist
        for us, n in self._pending.items():
            hist.record_value(us, n)
        self._pending.clear()
        lo, hi = self._min, self._max
        at = hist.get_percentile_to_value_dict(list(PERCENTILES))

        def pct(p: float) -> float:
            return min(hi, max(lo, at[p] / US))

        return LatencySummary(
            count=self.count,
            min=lo,
            mean=self._sum / self.count,
            p50=pct(50.0),
            p90=pct(90.0),
            p95=pct(95.0),
            p99=pct(99.0),
            max=hi,
        )


def summarize(values_seconds: Iterable[float]) -> LatencySummary | None:
    """Summary of `values_seconds` (None when empty)."""
    return Distribution().extend(values_seconds).summary()


def latency_summary(results: Iterable[Result]) -> LatencySummary | None:
    """Client latency from the intended start, over successful requests."""
    return summarize(r.end - r.intended for r in results if r.ok)


def ttft_summary(results: Iterable[Result]) -> LatencySummary | None:
    """Time to first token from the actual send, over successful streamed requests."""
    return summarize(r.first_token - r.sent for r in results if r.ok and r.first_token is not None)


def overhead_per_request(results: Iterable[Result]) -> LatencySummary | None:
    """Our overhead method: (end − actual send) − mock service time, per successful request
    that carried the mock's marker. None when no request carried one."""
    return summarize(o for r in results if (o := r.overhead) is not None)


def negative_overhead(results: Iterable[Result]) -> NegativeOverhead | None:
    """Successful requests whose per-request overhead came out negative: how many and the
    most negative (seconds), None when there are none. The mock's service time cannot
    exceed the client's latency for a request the mock really served, so a negative value is
    clock noise (microseconds) or a marker that lies; the histograms record such values as 0,
    and this is where they are counted instead of hidden."""
    count, worst = 0, 0.0
    for r in results:
        o = r.overhead
        if o is not None and o < 0:
            count += 1
            worst = min(worst, o)
    return NegativeOverhead(count, worst) if count else None


def overhead_percentile_diff(through: LatencySummary, direct: LatencySummary) -> dict[str, float]:
    """The seeds' method: each stat through the gateway minus the same stat direct to the mock.

    Differences of percentiles, not a distribution: they can be negative (jitter) and p99 − p99
    is not the p99 of anything. Kept for comparability with the seed's published tables.
    """
    return {stat: through.get(stat) - direct.get(stat) for stat in DIFF_STATS}


def percentile_diff_summary(through: LatencySummary, direct: LatencySummary) -> LatencySummary:
    """`overhead_percentile_diff` shaped as a LatencySummary (count = requests through)."""
    return LatencySummary(count=through.count, **overhead_percentile_diff(through, direct))


def outcome_counts(results: Iterable[Result]) -> dict[str, int]:
    """Requests per outcome (bounded keys: the Outcome values that occurred)."""
    return dict(Counter(r.outcome.value for r in results))


def success_ratio(run: LoadRun) -> float:
    """Successful requests over every request that fell due (drops count as failures)."""
    attempted = run.scheduled
    return sum(1 for r in run.results if r.ok) / attempted if attempted else 0.0


def throughput(run: LoadRun) -> float:
    """Successful requests per second over the whole run, drain included (the seed's figure)."""
    ok = sum(1 for r in run.results if r.ok)
    return ok / run.elapsed if run.elapsed > 0 else 0.0


def run_notes(run: LoadRun) -> list[str]:
    """One-line notes on what the engine itself had to do (never error text: it may carry a
    URL or a secret, so only the exception type is named)."""
    notes = []
    if run.cancelled:
        notes.append(
            f"{run.cancelled} requests still in flight after the {run.spec.drain_timeout:g} s"
            " drain were cancelled and counted as timeouts"
        )
    kind = (run.first_error or "").split(":", 1)[0].removeprefix("on_result ")
    if run.send_errors:
        notes.append(f"{run.send_errors} requests raised inside the tester ({kind}); a soak bug")
    if run.callback_errors:
        notes.append(f"the result callback raised {run.callback_errors} times; results kept")
    return notes


def report_fields(run: LoadRun) -> dict[str, Any]:
    """The `PhaseReport` fields a load run fills: `PhaseReport(name, kind, status, **fields)`.

    `completed` counts successful requests (the seed's "requests completed"); `outcomes` counts
    every sent request, timeouts of the drain included; drops are reported on their own.
    """
    results = run.results
    distributions: dict[str, LatencySummary] = {}
    ttft = ttft_summary(results)
    if ttft is not None:
        distributions["ttft"] = ttft
    overhead = overhead_per_request(results)
    histograms: dict[str, dict[str, Any]] = {}
    if overhead is not None:
        distributions["overhead_per_request"] = overhead
        hist = Histogram.of_seconds(o for r in results if (o := r.overhead) is not None)
        if hist is not None:  # for comparing runs (soak.baseline)
            histograms["overhead_per_request"] = hist.to_json()
    notes = run_notes(run)
    negative = negative_overhead(results)
    if negative is not None:
        notes.append(
            f"{negative.count} requests had a negative per-request overhead (worst"
            f" {negative.worst * 1e3:.3f} ms): the mock's service time exceeded the client's"
            " latency; recorded as 0 in the overhead distribution and histogram"
        )
    return {
        "notes": notes,
        "negative_overhead": negative,
        "duration_s": run.elapsed,
        "target_rate": run.target_rate,
        "throughput": throughput(run),
        "sent": run.sent,
        "completed": sum(1 for r in results if r.ok),
        "drops": run.drops,
        "outcomes": outcome_counts(results),
        "success_ratio": success_ratio(run),
        "latency": latency_summary(results),
        "distributions": distributions,
        "histograms": histograms,
        "generator": run.generator,
    }
