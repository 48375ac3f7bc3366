"""Prometheus recording and alert rules generated from the SLO block (one source of truth).

Alerts are written on aggregates across soak replicas (`sum by (target, phase)` of counters
and histogram buckets), never on per-replica percentile gauges. Latency thresholds are
counted exactly: requests above a threshold = `_count - _bucket{le=threshold}`, which is why
every threshold must be a bucket bound (`soak.metrics.check_thresholds_are_buckets`).

Severities follow the seeds' tiers: missing the *target* tier → `warning`; missing the
*acceptable* tier → `critical` (page). Thresholds without tiers (the overhead and stress
gates, failover max, operational alerts) → `warning`. Every alert has `for:`, a summary, a
description and a runbook_url (an anchor in docs/alerts.md). Windows of phase alerts follow
each phase's schedule interval (+5 min), so an alert always sees the phase's last run.
`AlertOptions.time_scale` divides every nominal duration (not the schedule's intervals), so a
game day with plans every 30 s instead of 15 min sees the alerts production would.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any

from soak import phases as registry
from soak.alerting import LEVELS, PHASE, TARGET, AlertOptions, RuleWriter, unless_fired
from soak.alerting import pct as _pct
from soak.config.schema import SloConfig
from soak.metric_catalogue import check_thresholds_are_buckets
from soak.promql import agg, duration, num, ratio, seconds

__all__ = ["AlertOptions", "build_prometheus_rule", "build_rules"]

DEFAULT_PHASE_INTERVALS: dict[str, float] = {
    s.name: s.reference_interval for s in registry.registry() if s.reference_interval
}
"""Schedule interval (seconds) per phase, used for the committed rule files: each phase's
`PhaseSpec.reference_interval`."""

DEFAULT_RUNBOOK_BASE = "https://github.com/llm-soak/llm-soak/blob/main/docs/alerts.md"
BURN_WINDOWS = (
    ("FastBurn", "1h", "5m", 14.4, "2m", True),
    ("SlowBurn", "6h", "30m", 6.0, "15m", True),
    ("TicketBurn", "1d", "2h", 3.0, "1h", False),
    ("TicketBurn", "3d", "6h", 1.0, "1h", False),
)
"""Multi-window multi-burn-rate pairs (SRE workbook): name, long and short window, burn factor,
for, and whether it may page (the page pairs spend 2% and 5% of a 30-day budget in 1 h and 6 h;
the ticket pairs 10% in 1 d and 3 d). Windows widen to the schedule (`burn_windows`)."""
BURN_MARGIN = 300.0
"""Seconds a short window reaches past the gap between scheduled runs: the run itself and the
scrape that sees it."""
SCHEDULE = "phase:soak_schedule_interval_seconds:config"


PHASE_MARGIN = 300.0
"""Seconds a phase alert's window reaches past the phase's schedule interval (the run itself
and the scrape that sees it)."""


def _phase_alerts(
    r: RuleWriter, slo: SloConfig, phases: Mapping[str, float], opts: AlertOptions
) -> None:
    """Each scheduled phase's own alerts (`PhaseSpec.alerts`), windowed by its schedule, and
    quiet while an untrusted run of the phase is in their window (`_trusted_only`)."""
    for spec in registry.registry():
        if spec.alerts is None or spec.name not in phases:
            continue
        window, first = phase_window(phases[spec.name], opts), len(r.rules)
        spec.alerts(r, slo.phases.get(spec.name), phase=spec.name, window=window,
                    tiers=slo.tiers)  # fmt: skip
        for rule in r.rules[first:]:
            rule["expr"] = _trusted_only(rule["expr"], window)


def _trusted_only(expr: str, window: str) -> str:
    """`expr` unless a run of the same target and phase in `window` was untrusted.

    Its requests describe the tester, not the gateway, for as long as they are in the window.
    An Alertmanager inhibition by SoakGeneratorUntrusted ended with the next trusted run, while
    the skewed run stayed in the overhead window: the tester's starvation was notified as the
    gateway's (game day, scenario 7)."""
    if _top_level_or(expr):  # `unless` binds tighter than `or`
        expr = f"(\n{expr}\n)"
    return f"{expr}\nunless on (target, phase)\n{_untrusted_in(window)}"


def _untrusted_in(window: str) -> str:
    """Series of target and phase with an untrusted run in `window` (value 0)."""
    return f"min_over_time(soak_generator_trusted[{window}]) == 0"


def _top_level_or(expr: str) -> bool:
    """Whether `expr` has an `or` outside every bracket (labels, ranges and calls nest)."""
    depth = 0
    for token in re.findall(r"[()\[\]{}]|\bor\b", expr):
        if token in "([{":
            depth += 1
        elif token in ")]}":
            depth -= 1
        elif depth == 0:
            return True
    return False


def phase_window(interval: float, opts: AlertOptions) -> str:
    """How far a phase alert looks back: the phase's interval and `PHASE_MARGIN` (scaled)."""
    return duration(interval + opts.scaled(PHASE_MARGIN))


def _target_alerts(
    r: RuleWriter, slo: SloConfig, phases: Mapping[str, float], opts: AlertOptions
) -> None:
    tiers, rss, w = slo.tiers, "soak_gateway_resident_memory_bytes", opts.span(opts.memory_window)
    growth = tiers.get("memory_growth")
    for level, severity in LEVELS:
        if growth is not None:
            limit = getattr(growth, level)
            # "still rising": at a pace that adds the target tier's growth within the window,
            # not any positive slope (a page more after a leak stopped re-fired it for hours)
            low = f"min_over_time({rss}[{w}])"
            rising = f"{num(growth.target / seconds(w))} * {low}"
            r.alert("SoakGatewayMemoryGrowth",
                    f"(\n  {rss}\n  / clamp_min({low}, 1)\n  - 1\n)"
                    f" > {num(limit)}\nand\nderiv({rss}[{opts.span('1h')}])\n> {rising}", "30m",
                    severity,
                    f"Gateway RSS grew more than {_pct(limit)} on {TARGET}",
                    f"Gateway resident memory is {{{{ $value | humanizePercentage }}}} above its "
                    f"{w} low and still rising ({level} tier: {_pct(limit)}).",
                    tier=level)  # fmt: skip
    for spec in registry.registry():
        if spec.target_alerts is not None and (section := slo.phases.get(spec.name)) is not None:
            spec.target_alerts(r, section)
    success = tiers["success_ratio"]
    budget = 1 - success.target
    faster: list[str] = []
    for name, long, short, factor, for_, pages in burn_windows(phases, opts.time_scale):
        limit = num(round(factor * budget, 9))
        page = pages and factor * budget >= 1 - success.acceptable
        alert = f"SoakErrorBudget{name}"
        r.alert(alert,
                f"target:soak_request_errors:ratio_rate{long} > {limit}\nand on (target)\n"
                f"target:soak_request_errors:ratio_rate{short} > {limit}\nand on (target)\n"
                f"target:soak_requests:rate{long} * {num(seconds(long))} >= {num(opts.min_requests)}"  # noqa: E501
                + _explained(faster, alert, short),
                for_, "critical" if page else "warning",
                f"Error budget burning {factor:g}x too fast on {TARGET}",
                f"{{{{ $value | humanizePercentage }}}} of requests failed over the last {long} "
                f"(and the last {short}): {factor:g}x the error budget of the "
                f"{_pct(success.target)} success objective.", window=long)  # fmt: skip
        faster += [] if alert in faster else [alert]


def _explained(faster: list[str], alert: str, short: str) -> str:
    """`unless` a faster burn-rate alert fired within this pair's short window: the errors
    that keep a slower pair true after a fast burn resolves are that incident's, already
    paged (the Alertmanager's inhibition holds only while the faster alert fires). A slow burn
    that outlasts the short window is a new incident and fires."""
    names = [n for n in faster if n != alert]
    return unless_fired(names, short) if names else ""


def burn_windows(
    phases: Mapping[str, float], time_scale: float = 1.0
) -> list[tuple[str, str, str, float, str, bool]]:
    """`BURN_WINDOWS` fitted to intermittent scheduled traffic: a short window shorter than the
    gap between runs is empty between them, so a steady fault would fire and resolve with every
    run. Each short window covers the shortest interval among the scheduled phases that count
    against the budget, plus `BURN_MARGIN`; a long window is never shorter than its short one.
    Nominal windows and the margin are divided by `time_scale` (`AlertOptions.time_scale`)."""
    counted = [s for p, s in phases.items() if p in _budget_phases()]
    gap = min(counted) + BURN_MARGIN / time_scale if counted else 0.0
    out = []
    for name, long, short, factor, for_, pages in BURN_WINDOWS:
        short_s = max(seconds(short) / time_scale, gap, 1.0)
        long_s = max(seconds(long) / time_scale, short_s)
        out.append((name, duration(long_s), duration(short_s), factor, for_, pages))
    return out


def _budget_phases() -> set[str]:
    """Phases whose request errors spend the budget (`PhaseSpec.in_error_budget`)."""
    return {s.name for s in registry.registry() if s.in_error_budget}


PHASE_FAILED_FOR = "6m"
"""`for:` of SoakPhaseFailed: longer than every alert that explains a failed verdict (the SLO
alerts' 5m, the fast burn's 2m), so the specific alert fires first and the Alertmanager's
inhibition mutes the verdict before it notifies; with 1m the verdict paged minutes ahead of the
alert that says why, and its resolution was muted (game day, scenario 2)."""


def untrusted_for(cadence: float, opts: AlertOptions) -> str:
    """`for:` of SoakGeneratorUntrusted, nominal (`RuleWriter.alert` compresses it): two plan
    intervals and twice `PHASE_MARGIN` (40m for a 15-minute plan), so one untrusted run never
    fires it and two in a row do.

    Its condition looks back one phase window (`phase_window`) for an untrusted flag, and a
    gauge holds a run's flag until the phase runs again: one skewed run keeps the condition true
    for an interval and a window (35m), two in a row for two intervals and a window (50m). One
    run skewed by a stall of the machine is muted in its phase's alerts (`_trusted_only`) but is
    no ticket for the tester: on a shared machine one in ten healthy runs was. The window also
    carries the condition through a run in which every phase kept up: a starved tester now and
    then gets one, and without the window that run resolved the alert, or kept it from ever
    firing (game day, scenario 7). Counted per gateway, not per phase: a starved tester flags
    phases in turn."""
    return duration(2 * cadence * opts.time_scale + 2 * PHASE_MARGIN)


def _operational_alerts(r: RuleWriter, opts: AlertOptions, cadence: float) -> None:
    """Alerts on the tester itself; `cadence` is the shortest phase interval in seconds."""
    job = f'job="{opts.job}"'
    untrusted = untrusted_for(cadence, opts)
    r.alert("SoakPhaseNotRunning",
            f"time() - max by (target, phase) (soak_phase_last_run_timestamp_seconds)\n"
            f"> on (phase) group_left ()\n2 * {SCHEDULE}", "5m", "warning",
            f"Phase {PHASE} has not run within its schedule on {TARGET}",
            f"The last {PHASE} run finished {{{{ $value | humanizeDuration }}}} ago, more than "
            "two schedule intervals: scheduled runs are being missed.")  # fmt: skip
    r.alert("SoakPhaseNeverRan",
            f"2 * {SCHEDULE}\n< on () group_left ()\n"
            f"(time() - max(process_start_time_seconds{{{job}}}))\n"
            "unless on (phase)\nsoak_phase_last_run_timestamp_seconds", "5m", "warning",
            f"Phase {PHASE} has never run since the soak daemon started",
            f"The soak daemon has been up for longer than two schedule intervals of {PHASE} "
            "({{ $value | humanizeDuration }}) without finishing a run of it.")  # fmt: skip
    r.alert("SoakPlanOverdue",
            f"time() - soak_plan_next_run_timestamp_seconds > {num(opts.scaled(600))}", "5m",
            "warning",
            "Plan {{ $labels.plan }} is overdue on {{ $labels.instance }}",
            "Plan {{ $labels.plan }} was due {{ $value | humanizeDuration }} ago and has not "
            "started: the scheduler is stuck or the daemon's event loop is blocked.")  # fmt: skip
    r.alert("SoakDaemonDown", f"up{{{job}}} == 0", "5m", "warning",
            "Soak daemon {{ $labels.instance }} is down",
            "Prometheus cannot scrape the soak daemon {{ $labels.instance }}: no phases run "
            "and the gateway is not being tested.")  # fmt: skip
    r.alert("SoakDaemonAbsent", f"absent(up{{{job}}})", "15m", "warning",
            f"No soak daemon is being scraped (job {opts.job})",
            f'Prometheus has no target with job="{opts.job}": the soak daemon is not deployed '
            "or not discovered.")  # fmt: skip
    r.alert("SoakPhaseFailed",
            "soak_phase_last_verdict == 0\nunless on (target, phase, round)\n"
            "soak_generator_trusted == 0", PHASE_FAILED_FOR, "warning",
            f"Phase {PHASE} failed its SLO checks on {TARGET}",
            f"The last {PHASE} run on {TARGET} failed at least one SLO check; its report "
            "(GET /runs) lists which.")  # fmt: skip
    r.alert("SoakPhaseErrored", "soak_phase_last_verdict == -1", "1m", "warning",
            f"Phase {PHASE} could not complete on {TARGET}",
            f"The last {PHASE} run ended in an error (gateway not ready, mock unreachable, "
            "...): nothing was measured.")  # fmt: skip
    r.alert("SoakGeneratorUntrusted",
            "count by (target) (\n"
            f"{_untrusted_in(phase_window(cadence, opts))}\n) > 0",
            untrusted, "warning", f"Soak generator could not keep up on {TARGET}",
            f"For {opts.span(untrusted)} the tester's own CPU, event-loop lag or in-flight cap "
            f"has skewed runs on {TARGET}, with no break of a whole schedule interval "
            "({{ $value }} phase(s) flagged lately): their latency figures are not "
            "trustworthy, and their alerts are muted.")  # fmt: skip
    r.alert("SoakGeneratorDroppingRequests",
            "sum by (target, phase) (increase(soak_generator_dropped_requests_total"
            f"[{opts.span('1h')}])) > 0",
            "1m", "warning", f"Soak generator dropped requests in {PHASE} on {TARGET}",
            f"{{{{ $value | humanize }}}} requests of the {PHASE} phase were never sent in the "
            "last hour because the in-flight cap was reached.")  # fmt: skip
    r.alert("SoakBreakerStuckOpen",
            "soak_breaker_state == 2\nunless on (target)\n"
            'max by (target) (soak_phase_running{phase=~"breaker|failover"}) == 1',
            opts.breaker_open_for, "warning",
            f"Breaker for {{{{ $labels.provider }}}} stuck open on {TARGET} "
            "({{ $labels.source }})",
            "The {{ $labels.source }} breaker of provider {{ $labels.provider }} has been open "
            f"for {opts.span(opts.breaker_open_for)} outside the breaker and failover "
            "phases.")  # fmt: skip
    r.alert("SoakConfigReloadFailed", "soak_config_last_reload_successful == 0", "5m",
            "warning", "Soak daemon {{ $labels.instance }} failed to reload its config",
            "The last config reload failed; the daemon keeps running the previous config. "
            "`soak check` names the offending key.")  # fmt: skip
    for kind, why in (
        ("Missed", "did not start in time (misfire grace exceeded)"),
        ("Skipped", "were skipped: the plan's previous run was still going"),
    ):
        r.alert(f"SoakScheduler{kind}Runs",
                f"increase(soak_scheduler_{kind.lower()}_runs_total[{opts.span('1h')}]) > 0",
                "1m", "warning",
                f"Scheduled runs of plan {{{{ $labels.plan }}}} {kind.lower()}",
                f"{{{{ $value | humanize }}}} scheduled runs of plan {{{{ $labels.plan }}}} "
                f"{why} in the last hour.")  # fmt: skip


def _recording(phases: Mapping[str, float], opts: AlertOptions) -> list[dict[str, Any]]:
    """Schedule constants, replica-aggregated rates for dashboards, burn-rate ratios."""
    rules: list[dict[str, Any]] = [
        {"record": SCHEDULE, "expr": f"vector({num(s)})", "labels": {"phase": p}}
        for p, s in sorted(phases.items())
    ]
    for metric in ("request_duration", "gateway_overhead", "time_to_first_token", "failover"):
        name = f"soak_{metric}_seconds_bucket"
        expr = f"sum by (target, phase, le) (rate({name}[5m]))"
        rules.append({"record": f"target_phase_le:{name}:rate5m", "expr": expr})
    expr = "sum by (target, phase, outcome) (rate(soak_requests_total[5m]))"
    rules.append({"record": "target_phase_outcome:soak_requests:rate5m", "expr": expr})
    excluded = sorted(set(registry.names()) - _budget_phases())
    sel = f'phase!~"{"|".join(excluded)}"' if excluded else ""
    errors_sel = f'{sel}, outcome!="ok"' if sel else 'outcome!="ok"'
    windows = {w for _, long, short, *_ in burn_windows(phases, opts.time_scale)
               for w in (long, short)}  # fmt: skip
    windows |= {long for _, long, *_ in BURN_WINDOWS}  # the dashboard's, whatever the schedule
    for w in sorted(windows, key=seconds):
        total = agg("rate", "soak_requests_total", sel, w, by="target")
        errors = agg("rate", "soak_requests_total", errors_sel, w, by="target")
        rules.append({"record": f"target:soak_requests:rate{w}", "expr": total})
        rules.append({"record": f"target:soak_request_errors:ratio_rate{w}",
                      "expr": ratio(errors, total)})  # fmt: skip
    return rules


def build_rules(
    slo: SloConfig,
    *,
    phases: Mapping[str, float],
    runbook_base: str = DEFAULT_RUNBOOK_BASE,
    options: AlertOptions | None = None,
    buckets: Mapping[str, Iterable[float]] | None = None,
) -> dict[str, Any]:
    """A Prometheus rules file (`{"groups": [...]}`) for a config's SLO block.

    `phases` maps each scheduled phase to its interval in seconds; phase alerts exist only for
    scheduled phases. With `buckets`, a threshold that is not a bound is a ValueError.
    """
    opts = options or AlertOptions()
    if buckets is not None:
        check_thresholds_are_buckets(
            {k: tuple(v) for k, v in buckets.items()}, registry.thresholds(slo)
        )
    for phase, interval in phases.items():
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ValueError(f"phases.{phase}: expected an interval in seconds, got {interval!r}")
    unknown = [p for p in phases if p not in registry.names()]
    if unknown:
        raise ValueError(f"phases.{unknown[0]}: unknown phase (use {', '.join(registry.names())})")
    slo_rules, ops_rules = RuleWriter(runbook_base, opts), RuleWriter(runbook_base, opts)
    _phase_alerts(slo_rules, slo, phases, opts)
    _target_alerts(slo_rules, slo, phases, opts)
    _operational_alerts(ops_rules, opts, min(phases.values(), default=0.0))
    return {"groups": [
        {"name": "soak.recording", "rules": _recording(phases, opts)},
        {"name": "soak.slo", "rules": slo_rules.rules},
        {"name": "soak.operations", "rules": ops_rules.rules},
    ]}  # fmt: skip


def build_prometheus_rule(
    slo: SloConfig,
    *,
    phases: Mapping[str, float],
    runbook_base: str = DEFAULT_RUNBOOK_BASE,
    options: AlertOptions | None = None,
    name: str = "llm-soak",
    namespace: str | None = None,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """The same groups as a monitoring.coreos.com/v1 PrometheusRule.

    kube-prometheus-stack selects rules by its release label, so `labels` defaults to
    `release: kube-prometheus-stack`; pass the labels your Prometheus' ruleSelector uses.
    """
    meta: dict[str, Any] = {"name": name}
    if namespace:
        meta["namespace"] = namespace
    meta["labels"] = {
        "app.kubernetes.io/name": "llm-soak",
        "app.kubernetes.io/component": "alerts",
        **(labels if labels is not None else {"release": "kube-prometheus-stack"}),
    }
    spec = build_rules(slo, phases=phases, runbook_base=runbook_base, options=options)
    return {"apiVersion": "monitoring.coreos.com/v1", "kind": "PrometheusRule",
            "metadata": meta, "spec": spec}  # fmt: skip
