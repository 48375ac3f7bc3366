"""What a phase declares about itself: the one record every other part of soak reads.

A phase module exposes `PHASE` (or `PHASES`, a tuple, when one module owns two phases that
share their code): a `PhaseSpec` with its name, its place in the default plan, how it runs,
how its config and SLO sections parse, and optional hooks for metrics, alert rules and its
report section. The registry (`soak.phases`) finds the modules; the config loader, the runner,
the daemon's metrics, the rules and the reports loop over the specs and never name a phase.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from soak.metric_catalogue import MetricSpec, Threshold

if TYPE_CHECKING:
    from soak.config.fields import Section
    from soak.phases.base import PhaseContext
    from soak.summary import PhaseDetails, PhaseReport

Runner = Callable[["PhaseContext"], Awaitable["PhaseReport | list[PhaseReport]"]]
"""Runs the phase against a live stack; one report, or one per round."""
SectionParser = Callable[["Section"], Any]
"""`phases.<name>` or `slo.<name>` (an empty section when neither profile nor file has it) →
the phase's frozen settings; errors go through `Section.fail`, one line naming the key."""


@dataclass(frozen=True, slots=True)
class PhaseSpec:
    """One phase, as every reader of it needs it."""

    name: str
    """Config key (`phases.<name>`, `slo.<name>`), `--phases` name, `phase` label value."""
    order: int
    """Its place in every plan: phases always run in this order, whatever the selection."""
    run: Runner
    settings: SectionParser
    """Parses `phases.<name>`."""
    slo: SectionParser | None = None
    """Parses `slo.<name>` (None: the phase is measured, not judged by an SLO block)."""
    on_demand: bool = False
    """Left out of the default plan; runs only when named (`--phases`, a schedule plan)."""
    in_error_budget: bool = True
    """Its request errors count against the success objective (burn-rate alerts); False for a
    phase that provokes errors on purpose or bypasses the gateway."""
    thresholds: Callable[[Any], Iterable[Threshold]] | None = None
    """Latency bounds of its SLO section that alerts count (they become bucket bounds)."""
    histograms: tuple[str, ...] = ()
    """Catalogue histograms labelled (target, phase) it writes besides the per-request ones;
    they exist at 0 from the phase's first request, so rate() sees its first run."""
    record: Callable[[PhaseReport, Any, str], None] | None = None
    """Writes its own figures after a run: `record(report, soak_metrics, target)`."""
    alerts: Callable[..., None] | None = None
    """Adds its alert rules: `alerts(rules, slo_section, tiers=..., window=..., options=...)`
    (see `soak.rules`)."""
    target_alerts: Callable[[Any, Any], None] | None = None
    """Adds alert rules on the target that hold whatever the schedule runs (a gauge the daemon
    keeps between runs): `target_alerts(rules, slo_section)`, called when its SLO section is
    set."""
    reference_interval: float | None = None
    """Seconds between its runs in the reference schedule the committed rule files and their
    tests are built for (`soak.rules.DEFAULT_PHASE_INTERVALS`); None: not in it."""
    markdown: Callable[[Sequence[PhaseReport]], list[str]] | None = None
    """Its own section of report.md, given its reports of the run."""
    metrics: tuple[MetricSpec, ...] = ()
    """`soak_*` metrics only this phase writes (through its `record` hook and
    `SoakMetrics.child`), declared in its module: the daemon's registry creates them with the
    catalogue's, and rules and dashboards check PromQL against them too."""
    figure: Callable[[PhaseReport], tuple[str, str, str] | None] | None = None
    """Its plot in report.html for one of its reports: (plot id, inline SVG, caption), or
    None when that report has nothing to draw."""
    details: type[PhaseDetails] | None = None
    """The typed record its reports carry in `PhaseReport.details` (report.json reads it back
    with its `from_dict`); None: it keeps none of its own."""



def report_hook(module: str, name: str) -> Callable[[Any], Any]:
    """A report hook (`markdown`, `figure`) that renders with `module.name`, imported when a
    report is written: a phase declares its section or plot without loading the report code
    at start (and without an import of the reports, which import the phases' records)."""

    def render(reports: Any) -> Any:
        return getattr(importlib.import_module(module), name)(reports)

    return render


def round_name(phase: str, number: int) -> str:
    """The report name of round `number` of a phase run in rounds (`stress-2`)."""
    return f"{phase}-{number}"


def split_round(name: str) -> tuple[str, str]:
    """(phase, round) of a report name: `stress-2` → ("stress", "2"), `overhead` →
    ("overhead", ""). Metric labels keep one dimension each: the round is its own label."""
    phase, dash, number = name.rpartition("-")
    if dash and phase and number.isdigit():
        return phase, number
    return name, ""
