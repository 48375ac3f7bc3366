"""Durations in config files: a number of seconds, or a string such as `250ms`, `1m30s`, `1h`.

One grammar for every duration a user writes (phase lengths, latencies, timeouts, SLO
thresholds), so `5m` means the same everywhere. Values are plain float seconds once parsed.
"""

from __future__ import annotations

import math
import re

DURATION_HINT = "use 500ms, 30s, 5m, 1h30m"
"""What a valid duration looks like: the hint in every duration error."""

_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6}
_PART = re.compile(r"(\d+(?:\.\d+)?)(h|ms|m|s|us|µs)")
_WHOLE = re.compile(r"(?:\d+(?:\.\d+)?(?:h|ms|m|s|us|µs))+")
_LARGEST = 2**1023  # the order of magnitude of the largest float


def parse_duration(value: object) -> float:
    """Seconds from `value`: an int/float of seconds or a unit string (`1h30m`, `250ms`, `2.5s`).

    Raises TypeError for a value that is neither a number nor a string, ValueError (with a short
    reason) for garbage, negatives, infinities and NaN.
    """
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise TypeError(f"expected a duration, got {type(value).__name__}")
    if isinstance(value, int | float):
        if isinstance(value, int) and abs(value) > _LARGEST:  # float() would overflow
            raise ValueError("invalid duration: a number too large to hold")
        if not math.isfinite(value):
            raise ValueError(f"invalid duration {value!r}")
        if value < 0:
            raise ValueError(f"negative duration {value!r}")
        return float(value)
    text = value.strip()
    if text.startswith("-") and _WHOLE.fullmatch(text[1:]):
        raise ValueError(f"negative duration {value!r}")
    if not _WHOLE.fullmatch(text):
        raise ValueError(f"invalid duration {value!r}")
    seconds = sum(float(n) * _UNITS[unit] for n, unit in _PART.findall(text))
    if not math.isfinite(seconds):  # 400 digits of hours: float("1" * 400) is inf
        raise ValueError("invalid duration: a number too large to hold")
    return seconds

