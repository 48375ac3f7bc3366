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
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from soak.metrics import check_thresholds_are_buckets
from soak.promql import agg, count_above, duration, gated, num, ratio, seconds
from soak.promql import percent_text as _pct
from soak.promql import seconds_text as _ms

DEFAULT_SLO: dict[str, dict[str, Any]] = {
    "overhead": {"mean": 0.005, "p50": 0.005, "p90": 0.010, "p95": 0.020, "p99": 0.100},
    "stress": {"success_ratio": 1.0},
    "sustained": {"p95": 10.0},
    "failover": {"mean": 5.0, "max": 10.0},
    "readiness": {"p95": 5.0, "p99": 10.0},
    "tiers": {
        "success_ratio": {"target": 0.99, "acceptable": 0.95},
        "throughput": {"target": 20.0, "acceptable": 15.0},
        "p50": {"target": 1.0, "acceptable": 2.0},
        "p95": {"target": 3.0, "acceptable": 5.0},
        "p99": {"target": 5.0, "acceptable": 10.0},
        "memory_growth": {"target": 0.20, "acceptable": 0.50},
        "failover_time": {"target": 1.0, "acceptable": 5.0},
    },
}  # fmt: skip
"""The seeds' numbers the rules read (seconds, ratios), shaped like `describe(config)["slo"]`;
a config's block is layered over these. Alerts use overhead, stress, failover and the tiers (the
throughput tier is in absolute requests/s and is left to the verdicts)."""

DEFAULT_PHASE_INTERVALS: dict[str, float] = {
    "overhead": 900, "sustained": 900, "readiness": 900,
    "stress": 3600, "breaker": 3600, "failover": 3600, "memory": 3600,
}  # fmt: skip
"""Schedule interval (seconds) per phase, used for the committed rule files."""

DEFAULT_RUNBOOK_BASE = "https://github.com/llm-soak/llm-soak/blob/main/docs/alerts.md"
LEVELS = (("target", "warning"), ("acceptable", "critical"))
"""Tier → severity: missing the target tier warns, missing the acceptable tier pages."""
BURN_WINDOWS = (("FastBurn", "1h", "5m", 14.4, "2m"), ("SlowBurn", "6h", "30m", 6.0, "15m"))
"""Multi-window multi-burn-rate pairs (SRE workbook): name, long, short window, factor, for."""
SCHEDULE = "phase:soak_schedule_interval_seconds:config"
TARGET = "{{ $labels.target }}"
PHASE = "{{ $labels.phase }}"


@dataclass(frozen=True, slots=True)
class AlertOptions:
    """Knobs that are not SLO numbers."""

    job: str = "soak"
    """Prometheus `job` label of the soak daemon's scrape (for up / absent)."""
    min_requests: int = 100
    """Minimum requests in a window before a ratio or latency alert may fire."""
    judged_phases: tuple[str, ...] = ("sustained", "readiness")
    """Phases held to the success and latency tiers (normal traffic)."""
    burn_excluded: tuple[str, ...] = ("calibration", "stress", "breaker", "failover", "capacity")
    """Left out of the error budget: calibration bypasses the gateway; the others provoke
    errors on purpose."""
    memory_window: str = "6h"
    breaker_open_for: str = "15m"
    for_override: str | None = None
    """Every alert's `for:` replaced by this (end-to-end tests that cannot wait minutes)."""


def merge_slo(slo: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """The config's SLO block layered over DEFAULT_SLO (section by section, tier by tier)."""
    merged = {k: dict(v) for k, v in DEFAULT_SLO.items()}
    merged["tiers"] = {k: dict(v) for k, v in DEFAULT_SLO["tiers"].items()}
    for section, body in slo.items():
        if not isinstance(body, Mapping):
            raise ValueError(f"slo.{section}: expected a mapping, got {body!r}")
        into = merged.setdefault(str(section), {})
        for key, value in body.items():
            if section == "tiers" and isinstance(value, Mapping):
                into.setdefault(str(key), {}).update(value)
            elif value is not None:
                into[str(key)] = value
    for section, body in merged.items():
        for key, value in body.items():
            for sub, v in value.items() if isinstance(value, Mapping) else [(None, value)]:
                if isinstance(v, bool) or not isinstance(v, int | float) or v < 0:
                    path = ".".join(str(p) for p in (section, key, sub) if p is not None)
                    raise ValueError(f"slo.{path}: expected a non-negative number, got {v!r}")
    return merged


class _Rules:
    """Accumulates alert rules with the shared labels and annotations."""

    def __init__(self, runbook_base: str, for_override: str | None = None) -> None:
        self.runbook_base = runbook_base.rstrip("#")
        self.for_override = for_override
        self.rules: list[dict[str, Any]] = []

    def alert(
        self, name: str, expr: str, for_: str, severity: str, summary: str, description: str,
        **labels: str,
    ) -> None:  # fmt: skip
        self.rules.append({
            "alert": name, "expr": expr, "for": self.for_override or for_,
            "labels": {"severity": severity, **labels},
            "annotations": {"summary": summary, "description": description,
                            "runbook_url": f"{self.runbook_base}#{name.lower()}"},
        })  # fmt: skip


def _latency(
    r: _Rules, name: str, metric: str, phase: str, window: str, stat: str, limit: float,
    minimum: float, severity: str, what: str, **labels: str,
) -> None:  # fmt: skip
    """Mean via _sum/_count; a percentile via the exact share of observations above `limit`;
    max: any observation above it."""
    sel = f'phase="{phase}"'
    above, count = count_above(metric, sel, limit, window)
    if stat == "mean":
        expr = f"{ratio(agg('increase', f'{metric}_sum', sel, window), count)}\n> {num(limit)}"
        desc = (f"Mean {what} over the last {window} of the {phase} phase is "
                f"{{{{ $value | humanizeDuration }}}} (threshold {_ms(limit)}).")  # fmt: skip
    elif stat == "max":
        expr = f"{above}\n> 0"
        desc = (f"{{{{ $value | humanize }}}} {phase}-phase requests in the last {window} had "
                f"{what} above the {_ms(limit)} maximum.")  # fmt: skip
    elif re.fullmatch(r"p\d+(\.\d+)?", stat) and 0 < float(stat[1:]) < 100:
        allowed = round(1 - float(stat[1:]) / 100, 6)
        expr = f"{ratio(above, count)}\n> {num(allowed)}"
        desc = (f"{{{{ $value | humanizePercentage }}}} of {phase}-phase requests in the last "
                f"{window} had {what} above {_ms(limit)}; {stat} < {_ms(limit)} allows at most "
                f"{_pct(allowed)}.")  # fmt: skip
    else:
        raise ValueError(f"slo: statistic {stat!r} must be mean, max or pNN (0 < NN < 100)")
    summary = f"{what.capitalize()} {stat} above {_ms(limit)} on {TARGET} ({phase})"
    r.alert(name, gated(expr, count, minimum), "5m", severity, summary, desc,
            statistic=stat, phase=phase, **labels)  # fmt: skip


def _phase_alerts(r: _Rules, slo: dict[str, dict[str, Any]], phases: Mapping[str, float],
                  opts: AlertOptions) -> None:  # fmt: skip
    tiers, n = slo["tiers"], opts.min_requests
    window = {p: duration(s + 300) for p, s in phases.items()}
    if "overhead" in phases:
        for stat, limit in slo["overhead"].items():
            _latency(r, "SoakGatewayOverheadHigh", "soak_gateway_overhead_seconds", "overhead",
                     window["overhead"], stat, limit, n, "warning", "gateway overhead")  # fmt: skip
    if "stress" in phases and "success_ratio" in slo["stress"]:
        need, sel = slo["stress"]["success_ratio"], 'phase="stress"'
        errors = agg("increase", "soak_requests_total", f'{sel}, outcome!="ok"', window["stress"])
        total = agg("increase", "soak_requests_total", sel, window["stress"])
        r.alert("SoakStressRequestsFailed",
                gated(f"{ratio(errors, total)}\n> {num(round(1 - need, 9))}", total, 1), "1m",
                "warning", f"Requests failed under stress on {TARGET}",
                f"{{{{ $value | humanizePercentage }}}} of stress-phase requests failed in the "
                f"last {window['stress']}; the stress SLO requires {_pct(need)} success.",
                )  # fmt: skip
    for phase in (p for p in opts.judged_phases if p in phases):
        w, sel = window[phase], f'phase="{phase}"'
        ok = agg("increase", "soak_requests_total", f'{sel}, outcome="ok"', w)
        total = agg("increase", "soak_requests_total", sel, w)
        for level, severity in LEVELS:
            need = tiers.get("success_ratio", {}).get(level)
            if need is not None:
                r.alert("SoakSuccessRatioLow",
                        gated(f"{ratio(ok, total)}\n< {num(need)}", total, n), "5m", severity,
                        f"Success ratio below {_pct(need)} on {TARGET} ({phase})",
                        f"{phase} phase success ratio over the last {w} is "
                        f"{{{{ $value | humanizePercentage }}}}, below the {level} tier "
                        f"({_pct(need)}).", tier=level, phase=phase)  # fmt: skip
        for stat in sorted(k for k in tiers if re.fullmatch(r"p\d+(\.\d+)?", k)):
            for level, severity in LEVELS:
                if tiers[stat].get(level) is not None:
                    _latency(r, "SoakLatencyHigh", "soak_request_duration_seconds", phase, w,
                             stat, tiers[stat][level], n, severity, "latency",
                             tier=level)  # fmt: skip
    if "failover" in phases:
        _failover_alerts(r, slo, window["failover"])


def _failover_alerts(r: _Rules, slo: dict[str, dict[str, Any]], window: str) -> None:
    metric, sel = "soak_failover_seconds", 'phase="failover"'
    count = agg("increase", f"{metric}_count", sel, window)
    mean = ratio(agg("increase", f"{metric}_sum", sel, window), count)
    for level, severity in LEVELS:
        limit = slo["tiers"].get("failover_time", {}).get(level)
        if limit is not None:
            r.alert("SoakFailoverSlow", gated(f"{mean}\n> {num(limit)}", count, 1), "5m",
                    severity, f"Mean failover time above {_ms(limit)} on {TARGET}",
                    f"Failed-over requests in the last {window} took "
                    f"{{{{ $value | humanizeDuration }}}} on average to reach the fallback "
                    f"({level} tier: {_ms(limit)}).", tier=level)  # fmt: skip
    limit = slo["failover"].get("max")
    if limit is not None:
        above, _ = count_above(metric, sel, limit, window)
        r.alert("SoakFailoverMaxExceeded", f"{above}\n> 0", "1m", "warning",
                f"A failover took longer than {_ms(limit)} on {TARGET}",
                f"{{{{ $value | humanize }}}} failed-over requests in the last {window} took "
                f"longer than {_ms(limit)} to reach the fallback.")  # fmt: skip


def _target_alerts(r: _Rules, slo: dict[str, dict[str, Any]], opts: AlertOptions) -> None:
    tiers, rss, w = slo["tiers"], "soak_gateway_resident_memory_bytes", opts.memory_window
    for level, severity in LEVELS:
        limit = tiers.get("memory_growth", {}).get(level)
        if limit is not None:
            r.alert("SoakGatewayMemoryGrowth",
                    f"(\n  {rss}\n  / clamp_min(min_over_time({rss}[{w}]), 1)\n  - 1\n)"
                    f" > {num(limit)}\nand\nderiv({rss}[1h]) > 0", "30m", severity,
                    f"Gateway RSS grew more than {_pct(limit)} on {TARGET}",
                    f"Gateway resident memory is {{{{ $value | humanizePercentage }}}} above its "
                    f"{w} low and still rising ({level} tier: {_pct(limit)}).",
                    tier=level)  # fmt: skip
    success = tiers["success_ratio"]
    for name, long, short, factor, for_ in BURN_WINDOWS:
        budget = 1 - success["target"]
        limit = num(round(factor * budget, 9))
        page = factor * budget >= 1 - success.get("acceptable", 0.0)
        r.alert(f"SoakErrorBudget{name}",
                f"target:soak_request_errors:ratio_rate{long} > {limit}\nand on (target)\n"
                f"target:soak_request_errors:ratio_rate{short} > {limit}\nand on (target)\n"
                f"target:soak_requests:rate{long} * {num(seconds(long))} >= {num(opts.min_requests)}",  # noqa: E501
                for_, "critical" if page else "warning",
                f"Error budget burning {factor:g}x too fast on {TARGET}",
                f"{{{{ $value | humanizePercentage }}}} of requests failed over the last {long} "
                f"(and the last {short}): {factor:g}x the error budget of the "
                f"{_pct(success['target'])} success objective.", window=long)  # fmt: skip


def _operational_alerts(r: _Rules, opts: AlertOptions) -> None:
    job = f'job="{opts.job}"'
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
            "time() - soak_plan_next_run_timestamp_seconds > 600", "5m", "warning",
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
    r.alert("SoakPhaseFailed", "soak_phase_last_verdict == 0", "1m", "warning",
            f"Phase {PHASE} failed its SLO checks on {TARGET}",
            f"The last {PHASE} run on {TARGET} failed at least one SLO check; its report "
            "(GET /runs) lists which.")  # fmt: skip
    r.alert("SoakPhaseErrored", "soak_phase_last_verdict == -1", "1m", "warning",
            f"Phase {PHASE} could not complete on {TARGET}",
            f"The last {PHASE} run ended in an error (gateway not ready, mock unreachable, "
            "...): nothing was measured.")  # fmt: skip
    r.alert("SoakGeneratorUntrusted", "soak_generator_trusted == 0", "1m", "warning",
            f"Soak generator could not keep up in {PHASE} on {TARGET}",
            f"The tester's own CPU, event-loop lag or in-flight cap skewed the last {PHASE} "
            "run: its latency figures are not trustworthy.")  # fmt: skip
    r.alert("SoakGeneratorDroppingRequests",
            "sum by (target, phase) (increase(soak_generator_dropped_requests_total[1h])) > 0",
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
            f"for {opts.breaker_open_for} outside the breaker and failover phases.")  # fmt: skip
    r.alert("SoakConfigReloadFailed", "soak_config_last_reload_successful == 0", "5m",
            "warning", "Soak daemon {{ $labels.instance }} failed to reload its config",
            "The last config reload failed; the daemon keeps running the previous config. "
            "`soak check` names the offending key.")  # fmt: skip
    for kind, why in (
        ("Missed", "did not start in time (misfire grace exceeded)"),
        ("Skipped", "were skipped: the plan's previous run was still going"),
    ):
        r.alert(f"SoakScheduler{kind}Runs",
                f"increase(soak_scheduler_{kind.lower()}_runs_total[1h]) > 0", "1m", "warning",
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
    sel = f'phase!~"{"|".join(opts.burn_excluded)}"' if opts.burn_excluded else ""
    errors_sel = f'{sel}, outcome!="ok"' if sel else 'outcome!="ok"'
    for w in sorted({w for _, long, short, _, _ in BURN_WINDOWS for w in (long, short)}):
        total = agg("rate", "soak_requests_total", sel, w, by="target")
        errors = agg("rate", "soak_requests_total", errors_sel, w, by="target")
        rules.append({"record": f"target:soak_requests:rate{w}", "expr": total})
        rules.append({"record": f"target:soak_request_errors:ratio_rate{w}",
                      "expr": ratio(errors, total)})  # fmt: skip
    return rules


def build_rules(
    slo: Mapping[str, Any],
    *,
    phases: Mapping[str, float],
    runbook_base: str = DEFAULT_RUNBOOK_BASE,
    options: AlertOptions | None = None,
    buckets: Mapping[str, Iterable[float]] | None = None,
) -> dict[str, Any]:
    """A Prometheus rules file (`{"groups": [...]}`) for `slo` layered over DEFAULT_SLO.

    `phases` maps each scheduled phase to its interval in seconds; phase alerts exist only for
    scheduled phases. With `buckets`, a threshold that is not a bound is a ValueError.
    """
    opts = options or AlertOptions()
    merged = merge_slo(slo)
    if buckets is not None:
        check_thresholds_are_buckets({k: tuple(v) for k, v in buckets.items()}, merged)
    for phase, interval in phases.items():
        if isinstance(interval, bool) or not isinstance(interval, int | float) or interval <= 0:
            raise ValueError(f"phases.{phase}: expected an interval in seconds, got {interval!r}")
    slo_rules = _Rules(runbook_base, opts.for_override)
    ops_rules = _Rules(runbook_base, opts.for_override)
    _phase_alerts(slo_rules, merged, phases, opts)
    _target_alerts(slo_rules, merged, opts)
    _operational_alerts(ops_rules, opts)
    return {"groups": [
        {"name": "soak.recording", "rules": _recording(phases, opts)},
        {"name": "soak.slo", "rules": slo_rules.rules},
        {"name": "soak.operations", "rules": ops_rules.rules},
    ]}  # fmt: skip


def build_prometheus_rule(
    slo: Mapping[str, Any],
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
