"""Draw latencies from a profile's latency model with the provider's seeded RNG."""

from __future__ import annotations

import math
import random

from .profile import Latency


def sample(latency: Latency, rng: random.Random) -> float:
    """One latency draw in seconds, never negative. Fixed models do not consume randomness."""
    model = latency.model
    p = latency.params
    if model == "fixed":
        return p[0]
    if model == "uniform":
        return rng.uniform(p[0], p[1])
    if model == "normal":
        return max(0.0, rng.gauss(p[0], p[1]))
    if model == "lognormal":
        if p[0] <= 0:
            return 0.0
        return rng.lognormvariate(math.log(p[0]), p[1])
    raise ValueError(f"unknown latency model {model!r}")


def is_zero(latency: Latency) -> bool:
    """True when the model always draws 0 (lets the hot path skip sleeping entirely)."""
    return latency.model == "fixed" and latency.params[0] == 0.0
