"""PromQL fragments the rules and dashboards are built from, written once and written safely.

Two pitfalls live here: `le` must match however an exporter spelled the bound ("1" and "1.0",
"5e-05" and "0.00005"), and ratios must never divide by zero (`clamp_min` on denominators,
plus a minimum-traffic gate joined with `and`), so an idle target yields no series, not NaN.
"""

from __future__ import annotations

import re
from decimal import Decimal

from prometheus_client.utils import floatToGoString


def le_matcher(value: float) -> str:
    """A PromQL matcher for `le` = value in every spelling exporters use.

    prometheus_client writes "1.0" and "5e-05", client_golang "1" (older) or "1.0" (newer)
    and "1e+06", hand-written exporters "0.00005"; Prometheus 3 normalises some of them.
    Prometheus regexes are anchored, so `le=~` matches exactly one of these strings.
    """
    value = float(value)
    go = go_float(value)
    spellings = {floatToGoString(value), repr(value), go, fixed_float(value)}
    if "." not in go and "e" not in go:
        spellings.add(go + ".0")
    return "le=~`" + "|".join(re.escape(s) for s in sorted(spellings)) + "`"


def _digits(value: float) -> tuple[str, int]:
    """Shortest round-trip digits of `value` and the position of its decimal point."""
    _, digits, exponent = Decimal(repr(value)).normalize().as_tuple()
    assert isinstance(exponent, int)
    return "".join(map(str, digits)), len(digits) + exponent


def fixed_float(value: float) -> str:
    """Shortest decimal spelling without an exponent: 0.00005, 300."""
    ds, dp = _digits(value)
    if dp <= 0:
        return "0." + "0" * -dp + ds
    if dp >= len(ds):
        return ds + "0" * (dp - len(ds))
    return ds[:dp] + "." + ds[dp:]


def go_float(value: float) -> str:
    """Go's strconv.FormatFloat(v, 'g', -1, 64): exponent form below 1e-4 and from 1e6."""
    ds, dp = _digits(value)
    exp = dp - 1
    if -4 <= exp < 6:
        return fixed_float(value)
    mantissa = ds[0] + ("." + ds[1:] if len(ds) > 1 else "")
    return f"{mantissa}e{'-' if exp < 0 else '+'}{abs(exp):02d}"


def num(x: float) -> str:
    """A number for PromQL text: no float noise (0.010000000000000009 → 0.01)."""
    return format(float(x), ".12g")


def percent_text(ratio: float) -> str:
    """A ratio for annotation text: 0.05 → "5%"."""
    return f"{ratio * 100:.4g}%"


def seconds_text(value: float) -> str:
    """Seconds for annotation text: 0.02 → "20ms", 5 → "5s"."""
    return f"{value * 1000:.4g}ms" if value < 1 else f"{value:.4g}s"


def duration(seconds: float) -> str:
    """Seconds as a Prometheus duration: 1d, 1h, 20m, 90s."""
    s = round(seconds)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if s and s % size == 0:
            return f"{s // size}{unit}"
    return f"{s}s"


def seconds(text: str) -> float:
    """A simple Prometheus duration (one unit) in seconds."""
    match = re.fullmatch(r"(\d+)([smhd])", text)
    if not match:
        raise ValueError(f"duration {text!r} must be a number and one of s, m, h, d")
    return float(match[1]) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match[2]]


def agg(fn: str, metric: str, sel: str, window: str, by: str = "target, phase") -> str:
    """`sum by (by) (fn(metric{sel}[window]))`: aggregate across replicas first."""
    return f"sum by ({by}) ({fn}({metric}{{{sel}}}[{window}]))"


def ratio(numerator: str, denominator: str) -> str:
    """numerator / denominator that is 0 (never NaN) when the denominator is 0."""
    return f"(\n  {numerator}\n)\n/ clamp_min(\n  {denominator}, 1e-9\n)"


def count_above(metric: str, sel: str, le: float, window: str) -> tuple[str, str]:
    """(observations above `le`, all observations) of a histogram over `window`, exactly."""
    count = agg("increase", f"{metric}_count", sel, window)
    within = agg("increase", f"{metric}_bucket", f"{sel}, {le_matcher(le)}", window)
    return f"{count}\n  - {within}", count


def gated(expr: str, count: str, minimum: float, on: str = "target, phase") -> str:
    """`expr` only where `count` reached `minimum`: no alert from a handful of requests."""
    return f"{expr}\nand on ({on})\n{count} >= {num(minimum)}"
