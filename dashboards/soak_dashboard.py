"""The llm-soak overview dashboard (grafanalib), with the SLO thresholds drawn as lines.

The only module that imports grafanalib (pinned: grafanalib==0.7.1). Queries read the
replica-aggregated recording rules of soak/rules.py (`sum by (le)` before
`histogram_quantile`); per-run gauges are shown per replica, never averaged. Every panel and
query uses the `$datasource` variable; the dashboard and panel ids are fixed so links and
provisioning stay stable across builds.

Built for hours and days: no panel caps its points (`maxDataPoints`) or coarsens its step
(`intervalFactor`), so Grafana's step is the range over the panel's width in pixels, rounded
(24 h on a half-width panel: 2 min). A gauge that is 1 only while a phase runs (20 s) would
fall between two such steps; the panels that show runs take `max_over_time(...[$__interval])`
so any run within a step shows, and counters step by `$__rate_interval`. grafanalib writes
Grafana 5-era JSON; `grafana11.current` turns it into Grafana 11's (schemaVersion 39).
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import attr  # grafanalib's own dependency: its panels are attrs classes
from grafanalib import core as g
from grafanalib._gen import DashboardEncoder

from soak.promql import le_matcher

from . import grafana11

UID = "llm-soak-overview"
SCHEMA_VERSION = 39
"""Grafana 11.0's dashboard schema; every Grafana 11 release loads it and migrates it forward."""
DS = {"type": "prometheus", "uid": "${datasource}"}
SEL = 'target=~"$target", phase=~"$phase"'
TSEL = 'target=~"$target"'
GREEN, YELLOW, RED, ORANGE = "green", "yellow", "red", "orange"
FORTHCOMING: frozenset[str] = frozenset()
"""Metrics a panel reads before soak writes them (none: soak_gateway_restarts_total is written
since the daemon's stack lives across runs)."""


@attr.s
class _Heatmap(g.Panel):
    """Grafana's current heatmap panel (since 9.0) on Prometheus buckets (`format: heatmap`,
    no calculation); grafanalib 0.7.1 writes only the legacy one (cards, color, yAxis)."""

    unit = attr.ib(default="s")

    def to_json_data(self) -> dict[str, Any]:
        return self.panel_json({
            "type": "heatmap",
            "options": {
                "calculate": False, "cellGap": 1, "showValue": "never",
                "color": {"mode": "scheme", "scheme": "Oranges", "fill": "dark-orange",
                          "scale": "exponential", "exponent": 0.5, "steps": 64,
                          "reverse": False},
                "filterValues": {"le": 1e-9}, "rowsFrame": {"layout": "auto"},
                "yAxis": {"axisPlacement": "left", "unit": self.unit},
                "tooltip": {"mode": "single", "yHistogram": True},
                "legend": {"show": True}, "exemplars": {"color": "rgba(255,0,255,0.7)"},
            },
            "fieldConfig": {"defaults": {"custom": {
                "scaleDistribution": {"type": "linear"},
                "hideFrom": {"legend": False, "tooltip": False, "viz": False}}},
                "overrides": []},
        })  # fmt: skip


def _q(expr: str, legend: str = "", ref: str = "A", **kw: Any) -> g.Target:
    return g.Target(expr=expr, legendFormat=legend, refId=ref, datasource=DS, **kw)


def _targets(*queries: tuple[str, str]) -> list[g.Target]:
    return [_q(e, legend, chr(ord("A") + i)) for i, (e, legend) in enumerate(queries)]


def _steps(base: str, *limits: tuple[float | None, str]) -> list[dict[str, Any]]:
    """Threshold steps (lines on a time series) for the limits that are set."""
    return [{"color": base, "value": None}] + [
        {"color": c, "value": v} for v, c in sorted(x for x in limits if x[0] is not None)
    ]


def _quantile(q: float, rule: str, sel: str = SEL) -> str:
    return f"histogram_quantile({q}, sum by (le) ({rule}{{{sel}}}))"


def _rate_quantile(q: float, metric: str, sel: str = SEL, window: str = "$__rate_interval") -> str:
    return f"histogram_quantile({q}, sum by (le) (rate({metric}_bucket{{{sel}}}[{window}])))"


def _within(metric: str, bound: float) -> str:
    """Share of the observations of `metric` within `bound` (a bucket bound); no value where
    there were none, rather than a 0 % between runs."""
    count = f"sum(rate({metric}_count{{{SEL}}}[$__rate_interval]))"
    within = f"sum(rate({metric}_bucket{{{SEL}, {le_matcher(bound)}}}[$__rate_interval]))"
    return f"{within}\n/ ({count} > 0)"


def _per_step(counter: str, by: str, sel: str = SEL) -> str:
    """What `counter` counted within each step, exactly, including a series first written
    within it: a counter of discrete events (runs, restarts, streams by class) appears with its
    first count, and increase() would miss that first event after every daemon start."""
    m = f"{counter}{{{sel}}}" if sel else counter
    return f"sum by ({by}) (\n  ({m} - {m} offset $__interval) >= 0\n  or {m}\n)"


def _mapping(*states: tuple[int, str, str]) -> list[dict[str, Any]]:
    options = {str(v): {"text": text, "color": color} for v, text, color in states}
    return [{"type": "value", "options": options}]


def _series(title: str, targets: list[g.Target], unit: str, *, steps=None, **kw) -> g.TimeSeries:
    return g.TimeSeries(
        title=title, dataSource=DS, targets=targets, unit=unit,
        thresholds=steps or _steps(GREEN), thresholdsStyleMode="line" if steps else "off",
        legendDisplayMode="table", legendCalcs=["lastNotNull", "max"], **kw,
    )  # fmt: skip


def _verdict_stat(title: str, expr: str, legend: str, *states: tuple[int, str, str]) -> g.Stat:
    return g.Stat(title=title, dataSource=DS, mappings=_mapping(*states),
                  targets=[_q(expr, legend)], reduceCalc="lastNotNull", graphMode="none",
                  colorMode="background", thresholds=_steps(RED, (1, GREEN)))  # fmt: skip


def _rows(slo: Mapping[str, Any]) -> list[tuple[str, list[tuple[int, int, Any]]]]:
    """Rows of (width, height, panel); build() lays them out on the 24-column grid."""
    return _run_rows(slo) + _trend_rows(slo) + _ops_rows()


def _run_rows(slo: Mapping[str, Any]) -> list[tuple[str, list[tuple[int, int, Any]]]]:
    tiers, over = slo.get("tiers", {}), slo.get("overhead", {})
    p95, p99 = tiers.get("p95", {}), tiers.get("p99", {})
    ok_tier, fo_tier = tiers.get("success_ratio", {}), tiers.get("failover_time", {})
    breaker = _mapping((0, "closed", GREEN), (1, "half-open", YELLOW), (2, "open", RED))
    lat_lines = [(p95.get("target"), YELLOW), (p99.get("target"), ORANGE),
                 (p99.get("acceptable"), RED)]  # fmt: skip
    over_stats = [s for s in ("p50", "p90", "p95", "p99") if s in over]
    over_lines = sorted({(over[s], ORANGE) for s in over_stats})
    dur = "target_phase_le:soak_request_duration_seconds_bucket:rate5m"
    ovh = "target_phase_le:soak_gateway_overhead_seconds_bucket:rate5m"
    fov = "target_phase_le:soak_failover_seconds_bucket:rate5m"
    rate = "target_phase_outcome:soak_requests:rate5m"
    return [
        ("Verdicts", [
            (12, 5, _verdict_stat("Last verdict per phase",
                                  f"min by (phase) (soak_phase_last_verdict{{{SEL}}})", "{{phase}}",
                                  (1, "PASS", GREEN), (0, "FAIL", RED), (-1, "ERROR", ORANGE))),
            (6, 5, g.Stat(title="Time since last run", dataSource=DS, format="s",
                          targets=[_q("time() - max by (phase) "
                                      f"(soak_phase_last_run_timestamp_seconds{{{SEL}}})",
                                      "{{phase}}")],
                          reduceCalc="lastNotNull", graphMode="none", thresholds=_steps(GREEN))),
            # any run within a step shows, however short the run and wide the range
            (6, 5, g.StateTimeline(title="Phase running", dataSource=DS,
                                   targets=[_q("max by (phase) (max_over_time(soak_phase_running"
                                               f"{{{SEL}}}[$__interval]))", "{{phase}}")],
                                   mappings=_mapping((0, "idle", "transparent"),
                                                     (1, "running", "blue")))),
        ]),
        ("Latency", [
            (12, 8, _series("Request latency from intended start (all replicas)", _targets(
                *((_quantile(q, dur), f"p{round(q * 100)}") for q in (0.5, 0.95, 0.99))),
                "s", steps=_steps(GREEN, *lat_lines))),
            (12, 8, _Heatmap(title="Request latency distribution", dataSource=DS,
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
                (f'sum by (phase) ({rate}{{{SEL}, outcome="ok"}})\n/ (sum by (phase) '
                 f"({rate}{{{SEL}}}) > 0)", "{{phase}}")), "percentunit",
                steps=_steps(RED, (ok_tier.get("acceptable"), YELLOW),
                             (ok_tier.get("target"), GREEN)))),
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
            # the worst state within each step: a breaker open for seconds still shows
            (12, 8, g.StateTimeline(title="Breaker state per provider: observed vs reported",
                                    dataSource=DS, mappings=breaker,
                                    targets=[_q("max by (provider, source) (max_over_time("
                                                f"soak_breaker_state{{{TSEL}}}[$__interval]))",
                                                "{{provider}} {{source}}")])),
            (12, 8, _series("Failover time", _targets(
                (_quantile(0.5, fov), "p50"), (_quantile(0.99, fov), "p99"),
                (f"sum(rate(soak_failover_seconds_sum{{{SEL}}}[$__rate_interval]))\n/ (sum("
                 f"rate(soak_failover_seconds_count{{{SEL}}}[$__rate_interval])) > 0)",
                 "mean")), "s",
                steps=_steps(GREEN, (fo_tier.get("target"), YELLOW),
                             (fo_tier.get("acceptable"), RED)))),
        ]),
    ]  # fmt: skip


def _trend_rows(slo: Mapping[str, Any]) -> list[tuple[str, list[tuple[int, int, Any]]]]:
    over, stream = slo.get("overhead", {}), slo.get("streaming", {})
    over_stats = [s for s in ("p50", "p99") if s in over]
    ttft = "target_phase_le:soak_time_to_first_token_seconds_bucket:rate5m"
    itl, tpot = "soak_inter_token_gap_seconds", "soak_time_per_output_token_seconds"
    goodput = stream.get("goodput_ratio")
    return [
        ("Gateway process", [
            (8, 8, _series("Gateway RSS and 6h trend", _targets(
                (f"soak_gateway_resident_memory_bytes{{{TSEL}}}", "{{instance}} RSS"),
                (f"predict_linear(soak_gateway_resident_memory_bytes{{{TSEL}}}[1h], 6 * 3600)",
                 "{{instance}} trend +6h")), "bytes")),
            (8, 8, _series("Gateway CPU and 1h average", _targets(
                (f"avg_over_time(soak_gateway_cpu_ratio{{{TSEL}}}[$__interval])", "{{instance}}"),
                (f"avg_over_time(soak_gateway_cpu_ratio{{{TSEL}}}[1h])",
                 "{{instance}} 1h average")), "percentunit")),
            (8, 8, _series("Gateway fds and threads", _targets(
                (f"soak_gateway_open_fds{{{TSEL}}}", "{{instance}} fds"),
                (f"soak_gateway_threads{{{TSEL}}}", "{{instance}} threads")), "short")),
        ]),
        ("Long-term trends (set the range to days)", [
            (6, 8, _series("Gateway RSS slope (1h, per hour)", _targets(
                (f"deriv(soak_gateway_resident_memory_bytes{{{TSEL}}}[1h]) * 3600",
                 "{{instance}} RSS / h")), "bytes")),
            (6, 8, _series("Gateway open fds slope (1h, per hour)", _targets(
                (f"deriv(soak_gateway_open_fds{{{TSEL}}}[1h]) * 3600", "{{instance}} fds / h")),
                "short")),
            (6, 8, _series("Overhead percentiles, trailing 1h (drift)", _targets(
                *((_rate_quantile(float(s[1:]) / 100, "soak_gateway_overhead_seconds",
                                  'target=~"$target", phase="overhead"', "1h"), s)
                  for s in over_stats)), "s",
                steps=_steps(GREEN, *((over[s], ORANGE) for s in over_stats)))),
            (6, 8, _series("Gateway restarts", _targets(
                (_per_step("soak_gateway_restarts_total", "reason", TSEL), "{{reason}}")),
                "short", drawStyle="bars")),
        ]),
        ("Streaming", [
            (8, 8, _series("Time to first token vs SLO", _targets(
                *((_quantile(q, ttft), f"p{round(q * 100)}") for q in (0.5, 0.9, 0.99))), "s",
                steps=_steps(GREEN, (stream.get("ttft"), RED)))),
            (8, 8, _series("Inter-token gap and TPOT vs SLO", _targets(
                (_rate_quantile(0.5, itl), "gap p50"), (_rate_quantile(0.99, itl), "gap p99"),
                (_rate_quantile(0.5, tpot), "TPOT p50"), (_rate_quantile(0.99, tpot),
                                                         "TPOT p99")), "s",
                steps=_steps(GREEN, (stream.get("tpot"), RED)))),
            (8, 8, _series("Gateway-added TTFT (last run, exact)", _targets(
                ('soak_phase_last_gateway_added_ttft_seconds{target=~"$target", '
                 'phase=~"$phase", statistic=~"p50|p99"}', "{{instance}} {{statistic}}")), "s",
                steps=_steps(GREEN, (stream.get("added_ttft_p50"), ORANGE),
                             (stream.get("added_ttft_p99"), RED)), drawStyle="points")),
            (12, 8, _series("Stream integrity by class", _targets(
                (_per_step("soak_stream_integrity_total", "class"), "{{class}}")), "short",
                drawStyle="bars", stacking={"mode": "normal", "group": "A"}, fillOpacity=60)),
            (12, 8, _series("Streams within the goodput bounds (TTFT, TPOT)", _targets(
                *((_within(m, stream[k]), f"TTFT <= {stream[k]:g}s" if k == "ttft"
                   else f"TPOT <= {stream[k]:g}s")
                  for m, k in (("soak_time_to_first_token_seconds", "ttft"), (tpot, "tpot"))
                  if k in stream)), "percentunit",
                steps=_steps(RED, (goodput, GREEN)))),
        ]),
    ]  # fmt: skip


def _ops_rows() -> list[tuple[str, list[tuple[int, int, Any]]]]:
    return [
        ("Generator health", [
            (6, 6, _verdict_stat("Generator trusted (last run)",
                                 f"min by (phase) (soak_generator_trusted{{{SEL}}})", "{{phase}}",
                                 (1, "trusted", GREEN), (0, "UNTRUSTED", RED))),
            (6, 6, _series("Event-loop lag (peak) and send lag p99", _targets(
                ("max_over_time(soak_generator_event_loop_lag_seconds[$__interval])",
                 "{{instance}} loop lag"),
                (_rate_quantile(0.99, "soak_send_lag_seconds"), "send lag p99")), "s")),
            (6, 6, _series("Generator CPU (peak)", _targets(
                ("max_over_time(soak_generator_cpu_ratio[$__interval])", "{{instance}}")),
                "percentunit", steps=_steps(GREEN, (0.9, RED)))),
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
                          reduceCalc="lastNotNull", graphMode="none", thresholds=_steps(GREEN))),
            (6, 6, _series("Plan runs by status", _targets(
                (_per_step("soak_plan_runs_total", "plan, status", ""), "{{plan}} {{status}}")),
                "short", drawStyle="bars")),
            (6, 6, _series("Missed and skipped runs", _targets(
                (_per_step("soak_scheduler_missed_runs_total", "plan", ""), "{{plan}} missed"),
                (_per_step("soak_scheduler_skipped_runs_total", "plan", ""), "{{plan}} skipped")),
                "short", drawStyle="bars")),
            (6, 6, _verdict_stat("Config reload", "min(soak_config_last_reload_successful)",
                                 "reload", (1, "OK", GREEN), (0, "FAILED", RED))),
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
        # a region per phase run, from its first scrape (`changes()` of the last-run time
        # missed each phase's first run after a daemon start: a new series has no change);
        # max_over_time keeps a run shorter than the step (1 min at 24 h)
        "expr": "max by (target, phase) (max_over_time(soak_phase_running"
                f"{{{SEL}}}[$__interval])) == 1",
        "titleFormat": "{{phase}} running", "tagKeys": "phase,target",
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
        "failover, breakers, gateway process, long-term trends, streams and generator health.",
        templating=_templating(), annotations=_annotations(), refresh="1m",
        time=g.Time("now-24h", "now"), timezone="browser", graphTooltip=1,
        schemaVersion=SCHEMA_VERSION,
    ).auto_panel_ids()  # fmt: skip
    return grafana11.current(
        json.loads(json.dumps(dashboard.to_json_data(), cls=DashboardEncoder)), SCHEMA_VERSION
    )
