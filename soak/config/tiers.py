"""`slo.tiers`: the seed's target / acceptable / warning tiers every phase grades its figures by.

Strict parsing into `Tier`s: latency tiers are durations, ratios at most 1, and the acceptable
bound may never be better than the target.
"""

from __future__ import annotations

from dataclasses import asdict
from types import MappingProxyType
from typing import Any

from soak.config.fields import Section
from soak.config.schema import HIGHER_IS_BETTER, TIER_METRICS, Tier

_DURATIONS = frozenset({"p50", "p95", "p99", "failover_time"})


def parse_tiers(s: Section) -> MappingProxyType[str, Tier]:
    """Every metric of `TIER_METRICS` from the `slo.tiers` section (each profile has them all)."""
    s.only(*TIER_METRICS)
    out = {}
    for metric in TIER_METRICS:
        t = s.section(metric)
        assert t is not None  # required: a missing one already failed
        t.only("target", "acceptable")
        if metric in _DURATIONS:
            target, acceptable = t.duration("target"), t.duration("acceptable")
        elif metric == "success_ratio":
            target = t.number("target", at_most=1.0)
            acceptable = t.number("acceptable", at_most=1.0)
        else:
            target, acceptable = t.number("target"), t.number("acceptable")
        higher = metric in HIGHER_IS_BETTER
        if (acceptable > target) if higher else (acceptable < target):
            word = "above" if higher else "below"
            t.fail("acceptable", f"must not be {word} target ({target:g})", "target is the better")
        out[metric] = Tier(target=target, acceptable=acceptable)
    return MappingProxyType(out)


def describe_tiers(tiers: MappingProxyType[str, Tier]) -> dict[str, Any]:
    """JSON-safe `slo.tiers`."""
    return {name: asdict(tier) for name, tier in tiers.items()}
