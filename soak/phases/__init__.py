"""The phase registry: every module of this package that declares `PHASE` (or `PHASES`) is a
phase, found at import; nothing else lists phase names.

`registry()` gives the specs in plan order; `select` turns a `--phases` selection into names;
`load_config` is `soak.config.load_config` with every registered phase's sections. A phase
defined outside the package (a plugin, a test) joins with `register`.
"""

from __future__ import annotations

import importlib
import os
import pkgutil
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from soak import config as _config
from soak.config.schema import Config, SloConfig
from soak.metric_catalogue import CATALOGUE, MetricSpec, tier_thresholds
from soak.phases.base import PhaseContext, Target
from soak.phases.spec import PhaseSpec, Threshold
from soak.summary import PhaseDetails, PhaseReport

__all__ = [
    "PhaseContext",
    "PhaseSpec",
    "PlanError",
    "Target",
    "Threshold",
    "catalogue",
    "default_plan",
    "details_type",
    "get",
    "load_config",
    "markdown_sections",
    "names",
    "record",
    "register",
    "registry",
    "select",
    "thresholds",
    "unregister",
]


class PlanError(ValueError):
    """The phase selection is not valid (usage error)."""


def _discover() -> dict[str, PhaseSpec]:
    found: dict[str, PhaseSpec] = {}
    for info in sorted(pkgutil.iter_modules(__path__), key=lambda i: i.name):
        module = importlib.import_module(f"{__name__}.{info.name}")
        specs = getattr(module, "PHASES", None)
        if specs is None:
            specs = (module.PHASE,) if hasattr(module, "PHASE") else ()
        for spec in specs:
            if spec.name in found:
                raise RuntimeError(f"phase {spec.name!r} is declared twice ({info.name})")
            found[spec.name] = spec
    return found


_SPECS: dict[str, PhaseSpec] = _discover()


def register(spec: PhaseSpec) -> None:
    """Add a phase defined outside this package; its name must be new."""
    if spec.name in _SPECS:
        raise ValueError(f"phase {spec.name!r} is already registered")
    _SPECS[spec.name] = spec


def unregister(name: str) -> None:
    """Remove a phase added with `register` (built-in phases stay)."""
    _SPECS.pop(name, None)


def registry() -> tuple[PhaseSpec, ...]:
    """Every phase, in plan order."""
    return tuple(sorted(_SPECS.values(), key=lambda s: (s.order, s.name)))


def get(name: str) -> PhaseSpec:
    """The spec of phase `name` (KeyError for an unknown name)."""
    return _SPECS[name]


def names() -> tuple[str, ...]:
    """Every phase name, in plan order."""
    return tuple(s.name for s in registry())


def default_plan() -> list[str]:
    """The phases `soak once` runs when none are named: all but the on-demand ones."""
    return [s.name for s in registry() if not s.on_demand]


def select(only: Sequence[str] | None) -> list[str]:
    """The phases to run, in plan order; an unknown name is a `PlanError`."""
    if not only:
        return default_plan()
    unknown = [p for p in only if p not in _SPECS]
    if unknown:
        raise PlanError(f"unknown phase {unknown[0]!r} (use {', '.join(names())})")
    return [p for p in names() if p in only]


def load_config(
    path: str | Path | None,
    *,
    profile: str | None = None,
    env: Mapping[str, str] = os.environ,
) -> Config:
    """`soak.config.load_config` with the sections of every registered phase."""
    return _config.load_config(path, profile=profile, env=env, phases=registry())


def thresholds(slo: SloConfig) -> list[Threshold]:
    """Every latency bound of `slo` that alerts count exactly (each must be a bucket bound):
    the latency tiers and what each judged phase declares."""
    found = tier_thresholds(slo.tiers)
    for spec in registry():
        if spec.thresholds is not None and spec.name in slo.phases:
            found.extend(spec.thresholds(slo.phases[spec.name]))
    return found


def record(report: PhaseReport, metrics: Any, *, target: str, finished_at: float) -> None:
    """Everything a finished phase report writes into `metrics` (a `SoakMetrics`): what every
    phase has (`phase_done`: summary gauges, the gateway process) and, through its kind's
    `PhaseSpec.record`, the phase's own figures."""
    metrics.phase_done(report, target=target, finished_at=finished_at)
    spec = _SPECS.get(report.kind)
    if spec is not None and spec.record is not None:
        spec.record(report, metrics, target)


def catalogue() -> tuple[MetricSpec, ...]:
    """Every `soak_*` metric: the shared catalogue, then each registered phase's own, in plan
    order. A name declared twice is a programming error (RuntimeError naming it)."""
    specs = list(CATALOGUE)
    seen = {s.name for s in specs}
    for phase in registry():
        for spec in phase.metrics:
            if spec.name in seen:
                what = f"metric {spec.name!r} of phase {phase.name!r}"
                raise RuntimeError(f"{what} is declared twice")
            seen.add(spec.name)
            specs.append(spec)
    return tuple(specs)


def details_type(kind: str) -> type[PhaseDetails] | None:
    """The details record of reports of `kind` (a phase name), None when that phase declares
    none or is not registered here."""
    spec = _SPECS.get(kind)
    return None if spec is None else spec.details


def markdown_sections() -> dict[str, Callable[[Sequence[PhaseReport]], list[str]]]:
    """Phase name → its own report.md section, for the phases that bring one."""
    return {s.name: s.markdown for s in registry() if s.markdown is not None}
