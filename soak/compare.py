"""Per-request overhead as a compact histogram, and the bootstrap of a statistic's difference.

A run's per-request overhead goes into report.json as bucket counts (microseconds rounded to
3 significant digits, ≤ 0.5 % error), so a later run can be compared with it without its raw
samples. The difference of a statistic between two runs gets a bootstrap confidence interval:

- a percentile: its bootstrap distribution is known exactly. The k-th smallest of n draws with
  replacement is ≤ bucket j when at least k draws land at or below j, so
  P(q* ≤ v_j) = P(Binomial(n, F_j) ≥ k) = I_{F_j}(k, n − k + 1) (regularized incomplete beta).
  We sample each run's q* from that distribution by inversion (seeded RNG) and take the
  percentiles of the differences: a bootstrap with no Monte-Carlo resampling of n values, so
  30,000 samples cost what 200 do;
- the mean: the bootstrap mean has variance σ²/n (σ² the histogram's own variance); it is
  sampled from the normal with that variance (n ≥ 100 in every profile).

Pure statistics: no I/O, no soak imports; `random.Random(seed)` makes every interval repeatable.
"""

from __future__ import annotations

import itertools
import math
import random
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

US = 1_000_000
DIGITS = 3
"""Significant digits a bucket keeps: 1234 µs is kept as 1230 µs."""
STATS = ("mean", "p50", "p90", "p95", "p99")
_PCT = {"p50": 50.0, "p90": 90.0, "p95": 95.0, "p99": 99.0}
_TAIL = 1e-9
"""Below this probability (or above 1 − it) a bucket's CDF is treated as 0 (or 1)."""


def bucket(us: int) -> int:
    """`us` rounded to `DIGITS` significant digits (values below 10^DIGITS are exact)."""
    if us < 10**DIGITS:
        return max(us, 0)
    scale = 10 ** (len(str(us)) - DIGITS)
    return (us + scale // 2) // scale * scale


@dataclass(frozen=True, slots=True)
class Histogram:
    """Counts per bucket value (µs, ascending); what report.json holds per phase."""

    values: tuple[int, ...]
    counts: tuple[int, ...]

    @classmethod
    def of_seconds(cls, seconds: Iterable[float]) -> Histogram | None:
        """Bucket every finite value (negatives as 0, like the report's own histogram)."""
        tally = Counter(bucket(round(max(s, 0.0) * US)) for s in seconds if math.isfinite(s))
        if not tally:
            return None
        keys = sorted(tally)
        return cls(tuple(keys), tuple(tally[k] for k in keys))

    @property
    def total(self) -> int:
        return sum(self.counts)

    def to_json(self) -> dict[str, Any]:
        return {"unit": "us", "digits": DIGITS, "values": list(self.values),
                "counts": list(self.counts)}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Histogram:
        """Read `to_json` back; a malformed one is a ValueError naming what is wrong."""
        if not isinstance(data, Mapping) or data.get("unit") != "us":
            raise ValueError("histogram: expected a mapping with unit 'us'")
        values, counts = data.get("values"), data.get("counts")
        if not isinstance(values, list) or not isinstance(counts, list):
            raise ValueError("histogram: values and counts must be lists")
        if len(values) != len(counts) or not values:
            raise ValueError("histogram: values and counts must be non-empty and equally long")
        ints = all(isinstance(v, int) and not isinstance(v, bool) for v in (*values, *counts))
        if not ints or min(values) < 0 or min(counts) < 1:
            raise ValueError("histogram: values must be integers ≥ 0 and counts ≥ 1")
        if any(b <= a for a, b in itertools.pairwise(values)):
            raise ValueError("histogram: values must be strictly ascending")
        return cls(tuple(values), tuple(counts))

    def mean(self) -> float:
        return sum(v * c for v, c in zip(self.values, self.counts, strict=True)) / self.total / US

    def variance(self) -> float:
        """The histogram's own (population) variance, seconds²."""
        mu, n = self.mean() * US, self.total
        spread = sum(c * (v - mu) ** 2 for v, c in zip(self.values, self.counts, strict=True))
        return spread / n / US / US

    def rank(self, stat: str) -> int:
        """1-based rank of percentile `stat` (the HDR convention: ceil(p/100 · n))."""
        return min(self.total, max(1, math.ceil(_PCT[stat] / 100.0 * self.total)))

    def stat(self, stat: str) -> float:
        """`mean` or a percentile (`p50`…`p99`), seconds."""
        if stat == "mean":
            return self.mean()
        k, seen = self.rank(stat), 0
        for v, c in zip(self.values, self.counts, strict=True):
            seen += c
            if seen >= k:
                return v / US
        return self.values[-1] / US


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz)."""
    tiny, eps = 1e-300, 1e-13
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c, d = 1.0, 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > tiny else tiny)
    h = d
    for m in range(1, 20_000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > tiny else tiny)
        c = 1.0 + aa / c if abs(1.0 + aa / c) > tiny else tiny
        step = d * c
        h *= step
        if abs(step - 1.0) < eps:
            break
    return h


def betainc(a: float, b: float, x: float) -> float:
    """Regularized incomplete beta I_x(a, b) for a, b > 0."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(
        math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b) + a * math.log(x) + b * math.log1p(-x)
    )
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


class _QuantileSampler:
    """Draws from the exact bootstrap distribution of one percentile of a histogram."""

    def __init__(self, hist: Histogram, stat: str) -> None:
        self.values = hist.values
        self.n = hist.total
        self.k = hist.rank(stat)
        cum, seen = [], 0
        for c in hist.counts:
            seen += c
            cum.append(seen)
        self.cum = cum
        self._cdf: dict[int, float] = {}

    def cdf(self, j: int) -> float:
        """P(q* ≤ values[j]) = P(Binomial(n, F_j) ≥ k)."""
        if j not in self._cdf:
            f = self.cum[j] / self.n
            p = 1.0 if f >= 1.0 else betainc(self.k, self.n - self.k + 1, f)
            self._cdf[j] = 0.0 if p < _TAIL else 1.0 if p > 1.0 - _TAIL else p
        return self._cdf[j]

    def draw(self, u: float) -> float:
        lo, hi = 0, len(self.values) - 1
        while lo < hi:  # the smallest j with cdf(j) ≥ u
            mid = (lo + hi) // 2
            if self.cdf(mid) >= u:
                hi = mid
            else:
                lo = mid + 1
        return self.values[lo] / US


def bootstrap_draws(hist: Histogram, stat: str, resamples: int, rng: random.Random) -> list[float]:
    """`resamples` draws of `stat` (seconds) from its bootstrap distribution over `hist`."""
    if stat == "mean":
        mu, sd = hist.mean(), math.sqrt(hist.variance() / hist.total)
        return [rng.gauss(mu, sd) for _ in range(resamples)]
    sampler = _QuantileSampler(hist, stat)
    return [sampler.draw(rng.random()) for _ in range(resamples)]


@dataclass(frozen=True, slots=True)
class Interval:
    """Current − baseline of one statistic: the point estimate and its confidence interval."""

    baseline: float
    current: float
    diff: float
    low: float
    high: float


def diff_interval(
    baseline: Histogram,
    current: Histogram,
    stat: str,
    *,
    confidence: float,
    resamples: int,
    rng: random.Random,
) -> Interval:
    """The two-sided `confidence` interval of stat(current) − stat(baseline), by bootstrap."""
    if stat not in STATS:
        raise ValueError(f"unknown statistic {stat!r} (use {', '.join(STATS)})")
    a = bootstrap_draws(baseline, stat, resamples, rng)
    b = bootstrap_draws(current, stat, resamples, rng)
    diffs = sorted(y - x for x, y in zip(a, b, strict=True))
    tail = (1.0 - confidence) / 2.0
    return Interval(
        baseline=baseline.stat(stat),
        current=current.stat(stat),
        diff=current.stat(stat) - baseline.stat(stat),
        low=_quantile(diffs, tail),
        high=_quantile(diffs, 1.0 - tail),
    )


def _quantile(ordered: Sequence[float], q: float) -> float:
    """Linear-interpolated quantile of sorted values."""
    pos = q * (len(ordered) - 1)
    i = math.floor(pos)
    j = min(i + 1, len(ordered) - 1)
    return ordered[i] + (ordered[j] - ordered[i]) * (pos - i)


REGRESSED, IMPROVED, UNCHANGED = "regressed", "improved", "no significant change"


def verdict(interval: Interval, tolerance: float) -> str:
    """Regressed when the whole interval lies above +tolerance, improved when it lies below
    −tolerance, else no significant change (a change smaller than the tolerance, or one the
    data cannot tell from noise)."""
    if interval.low > tolerance:
        return REGRESSED
    if interval.high < -tolerance:
        return IMPROVED
    return UNCHANGED

