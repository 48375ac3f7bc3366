"""What a gateway says about itself, read from its Prometheus text: histograms, breaker state.

The gateway's self-report is shown *next to* what the mock saw, never instead of it: black-box
numbers come from the mock's traces. This module owns parsing the text format (via
prometheus_client's parser) and the small arithmetic on scraped histograms: summing series,
diffing two scrapes to isolate one phase, and histogram_quantile-style estimates.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

from soak.breaker import BreakerState

CLOSED, HALF_OPEN, OPEN = BreakerState.CLOSED, BreakerState.HALF_OPEN, BreakerState.OPEN
"""Short names of the `BreakerState` members, for the gateway kinds' parsers."""


_SAMPLE = re.compile(
    r"[ \t]*[a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?[ \t]+[-+]?(?:[0-9.]|Inf|inf|NaN|Nan)\S*"
    r"(?:[ \t]+-?[0-9]+)?[ \t]*\r?$"
)
"""A sample line of the text format: name, labels, value, optional timestamp."""


class MetricsParseError(ValueError):
    """The gateway's metrics page is not Prometheus text."""


@dataclass(frozen=True, slots=True)
class MetricSample:
    name: str
    labels: Mapping[str, str]
    value: float


def parse_samples(text: str, families: Iterable[str] | None = None) -> list[MetricSample]:
    """Every sample of a Prometheus text page, with its full sample name (`_bucket`, `_total`);
    with `families`, only theirs (names, or prefixes of names).

    A gateway's page can hold thousands of series (LiteLLM's: histograms per model, key and
    team, growing with traffic): parsed whole it held soak's event loop 19-35 ms per scrape
    and delayed the sends of the load it ran beside. The lines of other families are dropped
    by a prefix test before the parser sees them, once a regex found each a sample line or a
    comment (a page that is not Prometheus text is still refused)."""
    if families is not None:
        names = tuple(families)
        keep = (*names, *(f"# HELP {n}" for n in names), *(f"# TYPE {n}" for n in names))
        kept = []
        for number, line in enumerate(text.split("\n"), 1):
            if line.startswith(keep):
                kept.append(line)
            elif line.strip() and not line.startswith("#") and not _SAMPLE.match(line):
                raise MetricsParseError(f"not Prometheus text: line {number} is not a sample")
        text = "\n".join(kept) + "\n"
    try:
        return [
            MetricSample(s.name, s.labels, s.value)
            for family in text_string_to_metric_families(text)
            for s in family.samples
        ]
    except (ValueError, TypeError, IndexError) as exc:
        raise MetricsParseError(f"not Prometheus text: {str(exc)[:120]}") from None


@dataclass(frozen=True, slots=True)
class HistogramSnapshot:
    """One histogram summed over its series: cumulative bucket counts by upper bound (seconds)."""

    count: float
    sum: float
    buckets: tuple[tuple[float, float], ...]
    """(le, cumulative count), ascending, ending with +Inf."""

    @property
    def mean(self) -> float | None:
        return self.sum / self.count if self.count > 0 else None

    def quantile(self, q: float) -> float | None:
        """Linear interpolation inside the bucket holding rank q·count (as PromQL does);
        None without observations, the last finite bound when it falls in +Inf."""
        if self.count <= 0 or not self.buckets:
            return None
        rank = q * self.count
        prev_le, prev_n = 0.0, 0.0
        for le, n in self.buckets:
            if n >= rank:
                if math.isinf(le):
                    return prev_le
                if n == prev_n:
                    return le
                return prev_le + (le - prev_le) * (rank - prev_n) / (n - prev_n)
            prev_le, prev_n = le, n
        return prev_le

    def minus(self, before: HistogramSnapshot | None) -> HistogramSnapshot:
        """What was observed between an earlier scrape and this one (a phase's own share).
        A counter reset (gateway restarted) makes the earlier scrape irrelevant."""
        if before is None or before.count > self.count:
            return self
        earlier = dict(before.buckets)
        return HistogramSnapshot(
            count=self.count - before.count,
            sum=self.sum - before.sum,
            buckets=tuple((le, n - earlier.get(le, 0.0)) for le, n in self.buckets),
        )


def histogram(
    samples: Iterable[MetricSample],
    name: str,
    where: Callable[[Mapping[str, str]], bool] = lambda _labels: True,
) -> HistogramSnapshot | None:
    """Histogram `name` summed over every series whose labels pass `where`; None if absent."""
    count = total = 0.0
    buckets: dict[float, float] = {}
    seen = False
    for s in samples:
        if not where(s.labels):
            continue
        if s.name == f"{name}_count":
            count += s.value
            seen = True
        elif s.name == f"{name}_sum":
            total += s.value
        elif s.name == f"{name}_bucket" and "le" in s.labels:
            le = float(s.labels["le"])  # "1", "1.0" and "+Inf" all parse
            buckets[le] = buckets.get(le, 0.0) + s.value
    if not seen:
        return None
    return HistogramSnapshot(count, total, tuple(sorted(buckets.items())))


def total(samples: Iterable[MetricSample], name: str) -> float | None:
    """Sum of every series of sample `name` (a counter with `_total`, or a gauge); None if
    absent."""
    values = [s.value for s in samples if s.name == name]
    return sum(values) if values else None


@dataclass(frozen=True, slots=True)
class SelfReport:
    """One scrape of a gateway's own view. Durations in seconds, memory in bytes."""

    source: str
    """Where it came from, e.g. `litellm /metrics/` (bounded: never a full URL)."""
    overhead: HistogramSnapshot | None = None
    """What the gateway thinks it adds to each request."""
    upstream_latency: HistogramSnapshot | None = None
    """The gateway's measure of the provider call."""
    total_latency: HistogramSnapshot | None = None
    breaker: Mapping[str, int] = field(default_factory=dict)
    """Provider → reported breaker state (CLOSED / HALF_OPEN / OPEN)."""
    cooldowns: Mapping[str, float] = field(default_factory=dict)
    """Provider → times the gateway took it out of rotation (cumulative)."""
    fallbacks: float | None = None
    """Requests the gateway reports as served by a fallback (cumulative)."""
    rss_bytes: float | None = None
    cpu_seconds: float | None = None
