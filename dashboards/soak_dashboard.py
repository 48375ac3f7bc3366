"""The llm-soak overview dashboard (grafanalib), with the SLO thresholds drawn as lines.

The only module that imports grafanalib (pinned: grafanalib==0.7.1). Queries read the
replica-aggregated recording rules of soak/rules.py (`sum by (le)` before
`histogram_quantile`); per-run gauges are shown per replica, never averaged. Every panel and
query uses the `$datasource` variable; the dashboard and panel ids are fixed so links and
provisioning stay stable across builds.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attr  # grafanalib's own dependency: its panels are attrs classes
from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

UID = "llm-soak-overview"
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'target=~"$target", phase=~"$phase"'
TSEL = 'target=~"$target"'
GREEN, YELLOW, RED, ORANGE = "green", "yellow", "red", "orange"


def _q(expr: str, legend: str = "", ref: str = "A", **kw: Any) -> g.Target:
    return g.Target(expr=expr, legendFormat=legend, refId=ref, datasource=DS, **kw)


def _targets(*queries: tuple[str, str]) -> list[g.Target]:
    return [_q(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(queries)]


def _steps(base: str, *limits: tuple[float, str]) -> list[dict[str, Any]]:
    return [{"color": base, "value": None}] + [{"color": c, "value": v} for v, c in limits]


def _quantile(q: float, rule: str) -> str:
    return f"histogram_quantile({q}, sum by (le) ({rule}{{{SEL}}}))"


def _mapping(*states: tuple[int, str, str]) -> list[dict[str, Any]]:
    options = {str(v): {"text": text, "color": color} for v, text, color in states}
    return [{"type": "value", "options": options}]


def _series(title: str, targets: list[g.Target], unit: str, *, steps=None, **kw) -> g.TimeSeries:
    return g.TimeSeries(
        title=title, dataSource=DS, targets=targets, unit=unit,
        thresholds=steps or _steps(GREEN), thresholdsStyleMode="line" if steps else "off",
        legendDisplayMode="table", legendCalcs=["lastNotNull", "max"], **kw,
    )  # fmt: skip


def _rows(slo: Mapping[str, Any]) -> list[tuple[str, list[tuple[int, int, Any]]]]:
    """Rows of (width, height, panel); build() lays them out on the 24-column grid."""
    tiers, over = slo.get("tiers", {}), slo.get("overhead", {})
    p95, p99 = tiers.get("p95", {}), tiers.get("p99", {})
    ok_tier, fo_tier = tiers.get("success_ratio", {}), tiers.get("failover_time", {})
    verdict = _mapping((1, "PASS", GREEN), (0, "FAIL", RED), (-1, "ERROR", ORANGE))
    breaker = _mapping((0, "closed", GREEN), (1, "half-open", YELLOW), (2, "open", RED))
    lat_lines = [(p95.get("target"), YELLOW), (p99.get("target"), ORANGE)]
    lat_lines += [(p99.get("acceptable"), RED)]
    over_stats = [s for s in ("p50", "p90", "p95", "p99") if s in over]
    over_lines = sorted({(over[s], ORANGE) for s in over_stats})
    dur = "target_phase_le:soak_request_duration_seconds_bucket:rate5m"
    ovh = "target_phase_le:soak_gateway_overhead_seconds_bucket:rate5m"
    fov = "target_phase_le:soak_failover_seconds_bucket:rate5m"
    rate = "target_phase_outcome:soak_requests:rate5m"
    return [
        ("Verdicts", [
            (12, 5, g.Stat(title="Last verdict per phase", dataSource=DS, mappings=verdict,
                           targets=[_q(f"min by (phase) (soak_phase_last_verdict{{{SEL}}})",
                                       "{{phase}}")],
                           reduceCalc="lastNotNull", graphMode="none", colorMode="background",
                           thresholds=_steps(RED, (1, GREEN)))),
            (6, 5, g.Stat(title="Time since last run", dataSource=DS, format="s",
                          targets=[_q("time() - max by (phase) "
                                      f"(soak_phase_last_run_timestamp_seconds{{{SEL}}})",
                                      "{{phase}}")],
                          reduceCalc="lastNotNull", graphMode="none")),
            (6, 5, g.StateTimeline(title="Phase running", dataSource=DS,
                                   targets=[_q(f"max by (phase) (soak_phase_running{{{SEL}}})",
                                               "{{phase}}")],
                                   mappings=_mapping((0, "idle", "transparent"),
                                                     (1, "running", "blue")))),
        ]),
        ("Latency", [
            (12, 8, _series("Request latency from intended start (all replicas)", _targets(
                *((_quantile(q, dur), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99))),
                "s", steps=_steps(GREEN, *sorted(x for x in lat_lines if x[0] is not None)))),
            (12, 8, g.Heatmap(title="Request latency distribution", dataSource=DS,
                              dataFormat="tsbuckets", yBucketBound="upper",
                              targets=[_q("sum by (le) (increase(soak_request_duration_seconds"
                                          f"_bucket{{{SEL}}}[$__rate_interval]))", "{{le}}",
                                          format="heatmap")])),
        ]),
        ("Gateway overhead", [
            (12, 8, _series("Per-request overhead percentiles vs thresholds", _targets(
                *((_quantile(float(s[1:]) / 100, ovh), s) for s in over_stats)), "s",
                steps=_steps(GREEN, *over_lines))),
            (12, 8, _series("Overhead of the last run, per replica (exact)", _targets(
                ('soak_phase_last_overhead_seconds{target=~"$target", phase="overhead", '
                 'statistic=~"p50|p90|p95|p99"}', "{{instance}} {{statistic}}"),
                ('soak_phase_last_overhead_percentile_diff_seconds{target=~"$target", '
                 'phase="overhead", statistic=~"p50|p90|p95|p99"}',
                 "{{instance}} {{statistic}} seed method")), "s",
                steps=_steps(GREEN, *over_lines), drawStyle="points")),
        ]),
        ("Success and throughput", [
            (6, 8, _series("Success ratio", _targets(
                (f'sum by (phase) ({rate}{{{SEL}, outcome="ok"}})\n/ clamp_min(sum by (phase) '
                 f"({rate}{{{SEL}}}), 1e-9)", "{{phase}}")), "percentunit",
                steps=_steps(RED, *((v, c) for v, c in ((ok_tier.get("acceptable"), YELLOW),
                                                        (ok_tier.get("target"), GREEN))
                                    if v is not None)))),
            (6, 8, _series("Requests by outcome", _targets(
                (f"sum by (outcome) ({rate}{{{SEL}}})", "{{outcome}}")), "reqps",
                stacking={"mode": "normal", "group": "A"}, fillOpacity=30)),
            (6, 8, _series("Throughput vs target (last runs, all replicas)", _targets(
                (f"sum by (phase) (soak_phase_last_throughput_requests_per_second{{{SEL}}})",
                 "{{phase}} throughput"),
                (f"sum by (phase) (soak_phase_last_target_requests_per_second{{{SEL}}})",
                 "{{phase}} target")), "reqps")),
            (6, 8, _series("Error ratio (burn-rate windows)", _targets(
                *((f"target:soak_request_errors:ratio_rate{w}{{{TSEL}}}", f"{{{{target}}}} {w}")
                  for w in ("1h", "6h", "1d"))), "percentunit")),
        ]),
        ("Failover and breakers", [
            (12, 8, g.StateTimeline(title="Breaker state per provider: observed vs reported",
                                    dataSource=DS, mappings=breaker,
                                    targets=[_q("max by (provider, source) "
                                                f"(soak_breaker_state{{{TSEL}}})",
                                                "{{provider}} {{source}}")])),
            (12, 8, _series("Failover time", _targets(
                (_quantile(0.5, fov), "p50"), (_quantile(0.99, fov), "p99"),
                (f"sum(rate(soak_failover_seconds_sum{{{SEL}}}[$__rate_interval]))\n/ clamp_min("
                 f"sum(rate(soak_failover_seconds_count{{{SEL}}}[$__rate_interval])), 1e-9)",
                 "mean")), "s",
                steps=_steps(GREEN, *((v, c) for v, c in ((fo_tier.get("target"), YELLOW),
                                                          (fo_tier.get("acceptable"), RED))
                                      if v is not None)))),
        ]),
        ("Gateway process", [
            (8, 8, _series("Gateway RSS and 6h trend", _targets(
                (f"soak_gateway_resident_memory_bytes{{{TSEL}}}", "{{instance}} RSS"),
                (f"predict_linear(soak_gateway_resident_memory_bytes{{{TSEL}}}[1h], 6 * 3600)",
                 "{{instance}} trend +6h")), "bytes")),
            (8, 8, _series("Gateway CPU and 1h average", _targets(
                (f"soak_gateway_cpu_ratio{{{TSEL}}}", "{{instance}}"),
                (f"avg_over_time(soak_gateway_cpu_ratio{{{TSEL}}}[1h])",
                 "{{instance}} 1h average")), "percentunit")),
            (8, 8, _series("Gateway fds and threads", _targets(
                (f"soak_gateway_open_fds{{{TSEL}}}", "{{instance}} fds"),
                (f"soak_gateway_threads{{{TSEL}}}", "{{instance}} threads")), "short")),
        ]),
        ("Generator health", [
            (6, 6, g.Stat(title="Generator trusted (last run)", dataSource=DS,
                          mappings=_mapping((1, "trusted", GREEN), (0, "UNTRUSTED", RED)),
                          targets=[_q(f"min by (phase) (soak_generator_trusted{{{SEL}}})",
                                      "{{phase}}")],
                          reduceCalc="lastNotNull", graphMode="none", colorMode="background",
                          thresholds=_steps(RED, (1, GREEN)))),
            (6, 6, _series("Event-loop lag and send lag p99", _targets(
                ("soak_generator_event_loop_lag_seconds", "{{instance}} loop lag"),
                ("histogram_quantile(0.99, sum by (le) (rate(soak_send_lag_seconds_bucket"
                 f"{{{SEL}}}[$__rate_interval])))", "send lag p99")), "s")),
            (6, 6, _series("Generator CPU", _targets(
                ("soak_generator_cpu_ratio", "{{instance}}")), "percentunit",
                steps=_steps(GREEN, (0.9, RED)))),
            # the drops counter exists only once a phase dropped: 0 for phases that ran clean
            (6, 6, _series("Dropped requests", _targets(
                ("sum by (phase) (increase(soak_generator_dropped_requests_total"
                 f"{{{SEL}}}[$__rate_interval]))\nor sum by (phase) (0 * soak_phase_running"
                 f"{{{SEL}}})", "{{phase}}")), "short")),
        ]),
        ("Scheduler and config", [
            (6, 6, g.Stat(title="Next scheduled run in", dataSource=DS, format="s",
                          targets=[_q("min by (plan) (soak_plan_next_run_timestamp_seconds)"
                                      " - time()", "{{plan}}")],
                          reduceCalc="lastNotNull", graphMode="none")),
            (6, 6, _series("Plan runs by status", _targets(
                ("sum by (plan, status) (increase(soak_plan_runs_total[$__rate_interval]))",
                 "{{plan}} {{status}}")), "short", drawStyle="bars")),
            (6, 6, _series("Missed and skipped runs", _targets(
                ("sum by (plan) (increase(soak_scheduler_missed_runs_total[$__rate_interval]))",
                 "{{plan}} missed"),
                ("sum by (plan) (increase(soak_scheduler_skipped_runs_total[$__rate_interval]))",
                 "{{plan}} skipped")), "short", drawStyle="bars")),
            (6, 6, g.Stat(title="Config reload", dataSource=DS,
                          mappings=_mapping((1, "OK", GREEN), (0, "FAILED", RED)),
                          targets=[_q("min(soak_config_last_reload_successful)", "reload")],
                          reduceCalc="lastNotNull", graphMode="none", colorMode="background",
                          thresholds=_steps(RED, (1, GREEN)))),
        ]),
    ]  # fmt: skip


def _templating() -> g.Templating:
    def var(name: str, label: str, query: str) -> g.Template:
        return g.Template(
            name=name, label=label, query=query, dataSource=DS, includeAll=True, multi=True,
            default="$__all", allValue=".*", refresh=2,
        )  # fmt: skip

    return g.Templating(list=[
        g.Template(name="datasource", label="Data source", query="prometheus",
                   type="datasource", default="Prometheus"),
        var("target", "Target", "label_values(soak_requests_total, target)"),
        var("phase", "Phase", 'label_values(soak_requests_total{target=~"$target"}, phase)'),
    ])  # fmt: skip


def _annotations() -> g.Annotations:
    return g.Annotations(list=[{
        "name": "Phase runs", "datasource": DS, "enable": True, "iconColor": "blue",
        # a region per phase run, from its first scrape: `changes()` of the last-run time
        # missed each phase's first run after a daemon start (a new series has no change)
        "expr": f"max by (target, phase) (soak_phase_running{{{SEL}}}) == 1",
        "step": "15s", "titleFormat": "{{phase}} running", "tagKeys": "phase,target",
    }])  # fmt: skip


def build(slo: Mapping[str, Any]) -> dict[str, Any]:
    """The dashboard as Grafana JSON (a dict), thresholds taken from `slo`."""
    panels: list[Any] = []
    y = 0
    for title, row in _rows(slo):
        panels.append(g.RowPanel(title=title, gridPos=g.GridPos(h=1, w=24, x=0, y=y)))
        y, x, height = y + 1, 0, 0
        for width, h, panel in row:
            panels.append(attr.evolve(panel, gridPos=g.GridPos(h=h, w=width, x=x, y=y)))
            x, height = x + width, max(height, h)
        y += height
    dashboard = g.Dashboard(
        title="llm-soak overview", uid=UID, tags=["llm-soak"], panels=panels,
        description="Gateway soak: verdicts, latency and overhead against SLO thresholds, "
        "failover, breakers, gateway process and generator health.",
        templating=_templating(), annotations=_annotations(), refresh="1m",
        time=g.Time("now-24h", "now"), timezone="browser", graphTooltip=1,
    ).auto_panel_ids()  # fmt: skip
    return json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder))
