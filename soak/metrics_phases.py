"""What the phases' own `record` hooks write on `SoakMetrics`: per-model and per-key tables, the
capacity knee, the payload steps, stream integrity classes and breaker states.

A mixin of `SoakMetrics` (the one writer of every `soak_*` series), apart from the series every
request and every phase report feeds. Labels come from the config (target, model, provider
names) or a fixed vocabulary (statistic, basis, class, breaker source); a provider the config
does not name becomes `unknown` (`SoakMetrics._provider`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from soak.breaker import BreakerState
from soak.metric_catalogue import (
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    PHASE_KEYS_FAILING,
    PHASE_KEYS_USED,
    PHASE_MODEL_OVERHEAD,
    PHASE_MODEL_SUCCESS,
    MetricSpec,
    model_label,
)
from soak.metric_catalogue import label_value as _label

BREAKER_SOURCES = ("observed", "reported")


def children(metric: Any, labelnames: Sequence[str]) -> set[tuple[str, ...]]:
    """The label values of every child `metric` exposes (read from its samples, the public
    view: `le` and the like are left out)."""
    found = set()
    for family in metric.collect():
        for sample in family.samples:
            values = tuple(sample.labels.get(n) for n in labelnames)
            if None not in values:
                found.add(values)
    return found


class PhaseSeries:
    """The series the phases' hooks feed (see the module docstring)."""

    _breakers: dict[tuple[str, str, str], BreakerState]

    def __getitem__(self, spec: MetricSpec) -> Any:  # SoakMetrics: the prometheus object
        raise NotImplementedError

    def _provider(self, name: str) -> str:  # SoakMetrics: a configured name, or "unknown"
        raise NotImplementedError

    def set_breakdown(self, parts: Mapping[str, Any], *, target: str, phase: str) -> None:
        """A phase's per-model overhead and success and its key counts (`soak.breakdown`),
        replacing the last run's: a model dropped from the mix leaves no stale series."""
        for spec in (PHASE_MODEL_OVERHEAD, PHASE_MODEL_SUCCESS, PHASE_KEYS_USED,
                     PHASE_KEYS_FAILING):  # fmt: skip
            metric = self[spec]
            for values in children(metric, spec.labels):
                if values[:2] == (target, phase):
                    metric.remove(*values)
        for model, row in (parts.get("model") or {}).items():
            name = model_label(model)
            self[PHASE_MODEL_SUCCESS].labels(target, phase, name).set(row["success_ratio"])
            for stat in ("p50", "p99"):
                if row.get(f"overhead_{stat}") is not None:
                    value = row[f"overhead_{stat}"]
                    self[PHASE_MODEL_OVERHEAD].labels(target, phase, name, stat).set(value)
        counts = parts.get("keys")
        if counts:
            self[PHASE_KEYS_USED].labels(target, phase).set(counts["keys"])
            self[PHASE_KEYS_FAILING].labels(target, phase).set(counts["failing"])

    def set_breaker_state(
        self, state: BreakerState, *, target: str, provider: str, source: str
    ) -> None:
        """Set a provider's breaker state; a change from the previous value counts a transition."""
        if source not in BREAKER_SOURCES:
            raise ValueError(f"breaker source {source!r} must be one of {BREAKER_SOURCES}")
        key = (_label("target", target), self._provider(provider), source)
        previous = self._breakers.get(key)
        self._breakers[key] = BreakerState(state)
        self[BREAKER_STATE].labels(*key).set(int(state))
        transitions = self[BREAKER_TRANSITIONS].labels(*key)  # exists at 0 from first sighting
        if previous is not None and previous != state:
            transitions.inc()

    def replay_breakers(self, timelines: Mapping[str, Any], *, target: str) -> None:
        """Replay a breaker phase's timelines (source → provider → record with a `timeline` of
        state names) into the state gauges, so each state change counts one transition."""
        for source in BREAKER_SOURCES:
            per_provider = timelines.get(source)
            if not isinstance(per_provider, dict):
                continue  # absent, or "not reported" by this gateway kind
            for provider, obs in per_provider.items():
                timeline = obs.get("timeline") if isinstance(obs, dict) else None
                for _t, name in timeline or ():
                    state = BreakerState.named(name)
                    if state is not None:
                        self.set_breaker_state(
                            state, target=target, provider=provider, source=source
                        )
