"""Config of the resilience phases (sustained, breaker, failover, memory, readiness), their SLOs
and the seed's target / acceptable / warning tiers: strict parsing into `config_schema` types.

Split from `soak.config` so each module stays one readable concern; `load_config` calls these
with the merged `phases` and `slo` sections, and `describe` uses `describe_resilience`.
"""

from __future__ import annotations

from dataclasses import asdict
from types import MappingProxyType
from typing import Any

from soak.config.fields import Section
from soak.config.schema import (
    HIGHER_IS_BETTER,
    TIER_METRICS,
    BreakerPhase,
    BreakerSlo,
    Config,
    FailoverPhase,
    FailoverSlo,
    MemoryPhase,
    MemorySlo,
    ReadinessPhase,
    ReadinessSlo,
    SustainedPhase,
    SustainedSlo,
    Tier,
)

PHASE_KEYS = ("sustained", "breaker", "failover", "memory", "readiness")
SLO_KEYS = (*PHASE_KEYS, "tiers")


def _sub(s: Section, name: str, *keys: str) -> Section:
    sub = s.section(name)
    assert sub is not None  # every profile carries it
    sub.only(*keys)
    return sub


def resilience_phases(s: Section) -> dict[str, Any]:
    """`PhasesConfig` keyword arguments of the resilience phases, from the `phases` section."""
    sus = _sub(s, "sustained", "rate", "duration", "latency")
    brk = _sub(s, "breaker", "rate", "duration", "latency", "lead", "fault", "window",
               "closed_share", "scrape_interval")  # fmt: skip
    fo = _sub(s, "failover", "requests", "rate", "latency")
    mem = _sub(s, "memory", "requests", "concurrency", "latency", "warmup")
    ready = _sub(s, "readiness", "rate", "duration", "latency")

    def shape(p: Section) -> dict[str, float]:
        return {
            "rate": p.number("rate", positive=True),
            "duration": p.duration("duration", positive=True),
            "latency": p.duration("latency"),
        }

    breaker = BreakerPhase(
        **shape(brk),
        lead=brk.duration("lead"),
        fault=brk.duration("fault", positive=True),
        window=brk.duration("window", positive=True),
        closed_share=brk.number("closed_share", positive=True, at_most=1.0),
        scrape_interval=brk.duration("scrape_interval", positive=True),
    )
    if breaker.lead + breaker.fault >= breaker.duration:
        brk.fail(
            "fault",
            f"lead + fault ({breaker.lead + breaker.fault:g}s) must end before duration "
            f"({breaker.duration:g}s)",
            "the load must go on after the fault so the breaker can be seen to close",
        )
    return {
        "sustained": SustainedPhase(**shape(sus)),
        "breaker": breaker,
        "failover": FailoverPhase(
            requests=fo.integer("requests", minimum=1),
            rate=fo.number("rate", positive=True),
            latency=fo.duration("latency"),
        ),
        "memory": MemoryPhase(
            requests=mem.integer("requests", minimum=1),
            concurrency=mem.integer("concurrency", minimum=1),
            latency=mem.duration("latency", positive=True),
            warmup=mem.duration("warmup"),
        ),
        "readiness": ReadinessPhase(**shape(ready)),
    }


def resilience_slos(s: Section) -> dict[str, Any]:
    """`SloConfig` keyword arguments of the resilience phases and tiers, from `slo`."""
    sus = _sub(s, "sustained", "completed_ratio", "throughput_ratio", "p95", "success_ratio")
    brk = _sub(s, "breaker", "success_ratio", "open_within", "recover_within")
    fo = _sub(s, "failover", "failed_over_ratio", "mean", "max")
    mem = _sub(s, "memory", "growth", "peak_ratio", "slope_mb_per_min")
    ready = _sub(s, "readiness", "success_ratio", "throughput_ratio", "p95", "p99")

    def ratio(p: Section, key: str) -> float:
        return p.number(key, at_most=1.0)

    return {
        "sustained": SustainedSlo(
            completed_ratio=ratio(sus, "completed_ratio"),
            throughput_ratio=ratio(sus, "throughput_ratio"),
            p95=sus.duration("p95", positive=True),
            success_ratio=ratio(sus, "success_ratio"),
        ),
        "breaker": BreakerSlo(
            success_ratio=ratio(brk, "success_ratio"),
            open_within=brk.duration("open_within", positive=True),
            recover_within=brk.duration("recover_within", positive=True),
        ),
        "failover": FailoverSlo(
            failed_over_ratio=ratio(fo, "failed_over_ratio"),
            mean=fo.duration("mean", positive=True),
            max=fo.duration("max", positive=True),
        ),
        "memory": MemorySlo(
            growth=mem.number("growth", positive=True),
            peak_ratio=mem.number("peak_ratio", positive=True),
            slope_mb_per_min=mem.number("slope_mb_per_min", positive=True),
        ),
        "readiness": ReadinessSlo(
            success_ratio=ratio(ready, "success_ratio"),
            throughput_ratio=ratio(ready, "throughput_ratio"),
            p95=ready.duration("p95", positive=True),
            p99=ready.duration("p99", positive=True),
        ),
        "tiers": _tiers(_sub(s, "tiers", *TIER_METRICS)),
    }


def _tiers(s: Section) -> MappingProxyType[str, Tier]:
    out = {}
    for metric in TIER_METRICS:
        t = _sub(s, metric, "target", "acceptable")
        if metric in ("p50", "p95", "p99", "failover_time"):
            target, acceptable = t.duration("target"), t.duration("acceptable")
        elif metric == "success_ratio":
            target, acceptable = (
                t.number("target", at_most=1.0),
                t.number("acceptable", at_most=1.0),
            )
        else:
            target, acceptable = t.number("target"), t.number("acceptable")
        higher = metric in HIGHER_IS_BETTER
        if (acceptable > target) if higher else (acceptable < target):
            word = "above" if higher else "below"
            t.fail("acceptable", f"must not be {word} target ({target:g})", "target is the better")
        out[metric] = Tier(target=target, acceptable=acceptable)
    return MappingProxyType(out)


def describe_resilience(config: Config) -> tuple[dict[str, Any], dict[str, Any]]:
    """JSON-safe (phases, slo) entries of the resilience phases, durations in seconds."""
    phases = {name: asdict(getattr(config.phases, name)) for name in PHASE_KEYS}
    slo: dict[str, Any] = {name: asdict(getattr(config.slo, name)) for name in PHASE_KEYS}
    slo["tiers"] = {name: asdict(tier) for name, tier in config.slo.tiers.items()}
    return phases, slo
