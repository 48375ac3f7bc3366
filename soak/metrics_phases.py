"""What the phases' own `record` hooks write on `SoakMetrics`: per-model and per-key tables, the
capacity knee, the payload steps, stream integrity classes and breaker states.

A mixin of `SoakMetrics` (the one writer of every `soak_*` series), apart from the series every
request and every phase report feeds. Labels come from the config (target, model, provider
names) or a fixed vocabulary (statistic, basis, class, breaker source); a provider the config
does not name becomes `unknown` (`SoakMetrics._provider`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import Any

from soak.breaker import BreakerState
from soak.metric_catalogue import (
    BREAKER_STATE,
    BREAKER_TRANSITIONS,
    CAPACITY_KNEE,
    MODEL_OVERHEAD,
    PAYLOAD_CPU,
    PAYLOAD_OVERHEAD,
    PAYLOAD_SLOPE,
    PHASE_KEYS_FAILING,
    PHASE_KEYS_USED,
    PHASE_MODEL_OVERHEAD,
    PHASE_MODEL_SUCCESS,
    STREAM_INTEGRITY,
    MetricSpec,
)
from soak.metric_catalogue import label_value as _label

BREAKER_SOURCES = ("observed", "reported")


def _model_label(model: str) -> str:
    """A workload model name (from the config) as a label value: at most 64 characters of
    `A-Za-z0-9_.-`, others as `_`."""
    return _label("model", re.sub(r"[^A-Za-z0-9_.-]", "_", model)[:64])


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
            name = _model_label(model)
            self[PHASE_MODEL_SUCCESS].labels(target, phase, name).set(row["success_ratio"])
            for stat in ("p50", "p99"):
                if row.get(f"overhead_{stat}") is not None:
                    value = row[f"overhead_{stat}"]
                    self[PHASE_MODEL_OVERHEAD].labels(target, phase, name, stat).set(value)
        counts = parts.get("keys")
        if counts:
            self[PHASE_KEYS_USED].labels(target, phase).set(counts["keys"])
            self[PHASE_KEYS_FAILING].labels(target, phase).set(counts["failing"])

    def set_capacity_knee(self, rate: float, *, target: str) -> None:
        """The highest rate the last capacity search held (0: none held)."""
        self[CAPACITY_KNEE].labels(_label("target", target)).set(rate)

    def set_payload(
        self,
        steps: Sequence[Mapping[str, Any]],
        slopes: Mapping[str, float | None],
        *,
        target: str,
    ) -> None:
        """The payload phase's steps (overhead p50/p99, CPU per request), its slopes (basis →
        seconds per 100 KB) and its per-model overhead; labels from phases.payload and
        workload.models only."""
        t = _label("target", target)
        for step in steps:
            sizes = (str(int(step["prompt_bytes"])), str(int(step["answer_tokens"])))
            for stat in ("p50", "p99"):
                if step.get(stat) is not None:
                    self[PAYLOAD_OVERHEAD].labels(t, *sizes, stat).set(step[stat])
            if step.get("cpu_s_per_request") is not None:
                self[PAYLOAD_CPU].labels(t, *sizes).set(step["cpu_s_per_request"])
        for basis in ("gateway", "floor", "net"):
            if (slope := slopes.get(basis)) is not None:
                self[PAYLOAD_SLOPE].labels(t, basis).set(slope)
        top = max(steps, key=lambda s: s.get("prompt_bytes", 0), default={})
        models = top.get("breakdown", {})
        for model, row in models.get("model", {}).items():
            name = _model_label(model)
            for stat in ("p50", "p99"):
                if row.get(f"overhead_{stat}") is not None:
                    self[MODEL_OVERHEAD].labels(t, name, stat).set(row[f"overhead_{stat}"])

    def count_stream_integrity(
        self, counts: Mapping[str, int], *, target: str, phase: str
    ) -> None:
        """Streams of one run by integrity class (whole, rechunked, ...)."""
        for cls, count in counts.items():
            self[STREAM_INTEGRITY].labels(target, phase, _label("class", cls)).inc(count)

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
