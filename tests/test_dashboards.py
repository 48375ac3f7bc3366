"""Generated dashboard and rules: fresh, datasource-templated, stable, names from the catalogue."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from soak.dashboards import grafana11, soak_dashboard

from soak.metrics import exposed_names

ROOT = Path(__file__).resolve().parent.parent
GENERATED = ROOT / "dashboards" / "generated"
DASHBOARD = GENERATED / "soak-overview.json"
RULES = GENERATED / "soak.rules.yml"
# A soak_* name not part of a recording rule name (those carry colons).
SOAK_NAME = re.compile(r"(?<![:\w])soak_[a-z0-9_]+(?![:\w])")
RECORDED = re.compile(r"\b[a-z_]+:soak_[a-z0-9_]+:[a-z0-9]+\b")


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads(DASHBOARD.read_text())


@pytest.fixture(scope="module")
def rules() -> dict:
    return yaml.safe_load(RULES.read_text())


def panels(dashboard: dict) -> list[dict]:
    return list(grafana11.panels(dashboard["panels"]))


def queries(dashboard: dict) -> list[str]:
    exprs = [t["expr"] for p in panels(dashboard) for t in p.get("targets", [])]
    exprs += [a["expr"] for a in dashboard["annotations"]["list"] if "expr" in a]
    exprs += [v["query"] for v in dashboard["templating"]["list"] if v["type"] == "query"]
    return exprs


def test_build_check_passes() -> None:
    done = subprocess.run(
        [sys.executable, "dashboards/build.py", "--check"],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    for name in ("soak-overview.json", "soak.rules.yml", "soak.prometheusrule.yaml"):
        assert (ROOT / "deploy" / "generated" / name).read_text() == (GENERATED / name).read_text()


def test_check_fails_on_stale_files(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("soak_build", ROOT / "dashboards" / "build.py")
    build = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(build)
    out = ["--out-root", str(tmp_path)]
    assert build.main(["--check", *out]) == 1  # nothing written yet
    assert build.main(out) == 0
    assert build.main(["--check", *out]) == 0
    (tmp_path / "deploy" / "generated" / "soak.rules.yml").write_text("groups: []\n")
    assert build.main(["--check", *out]) == 1


def test_the_deployed_schedule_gives_each_phase_its_shortest_gap() -> None:
    from soak import generate

    config = generate.load(ROOT / "deploy" / "base" / "config.yaml")
    assert generate.phase_intervals(config) == {
        "calibration": 900, "overhead": 900, "stress": 3600,
    }  # fmt: skip
    plans = [(("calibration", "overhead"), 900.0), (("overhead", "stress"), 300.0)]
    assert generate.schedule_intervals(plans) == {
        "calibration": 900, "overhead": 300, "stress": 300,
    }  # fmt: skip


def test_every_soak_metric_in_promql_exists_in_the_catalogue(dashboard: dict, rules: dict) -> None:
    known = exposed_names()
    exprs = queries(dashboard) + [r["expr"] for g in rules["groups"] for r in g["rules"]]
    used = {name for expr in exprs for name in SOAK_NAME.findall(expr)}
    assert used, "no soak_* metric found in any query"
    assert used <= known | soak_dashboard.FORTHCOMING, sorted(used - known)
    assert {"soak_requests_total", "soak_phase_last_verdict", "soak_breaker_state"} <= used


def test_recording_rules_used_by_the_dashboard_exist(dashboard: dict, rules: dict) -> None:
    recorded = {r["record"] for g in rules["groups"] for r in g["rules"] if "record" in r}
    used = {name for expr in queries(dashboard) for name in RECORDED.findall(expr)}
    assert used and used <= recorded, sorted(used - recorded)


def test_every_panel_and_query_uses_the_datasource_variable(dashboard: dict) -> None:
    variables = {v["name"]: v for v in dashboard["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    assert {"target", "phase"} <= variables.keys()
    with_queries = [p for p in panels(dashboard) if p.get("targets")]
    assert len(with_queries) >= 15
    for panel in with_queries:
        assert panel["datasource"]["uid"] == "${datasource}", panel["title"]
        for target in panel["targets"]:
            assert target["datasource"]["uid"] == "${datasource}", panel["title"]


def test_uids_and_panel_ids_are_stable(dashboard: dict) -> None:
    assert dashboard["uid"] == "llm-soak-overview"
    ids = [p["id"] for p in panels(dashboard)]
    assert ids == list(range(1, len(ids) + 1))  # assigned in layout order, so rebuilds match
    titles = [p["title"] for p in panels(dashboard)]
    assert len(set(titles)) == len(titles)


def test_threshold_lines_come_from_the_slo(dashboard: dict) -> None:
    by_title = {p["title"]: p for p in panels(dashboard)}
    overhead = by_title["Per-request overhead percentiles vs thresholds"]
    steps = overhead["fieldConfig"]["defaults"]["thresholds"]["steps"]
    assert [s["value"] for s in steps[1:]] == [0.005, 0.01, 0.02, 0.1]
    assert overhead["fieldConfig"]["defaults"]["custom"]["thresholdsStyle"]["mode"] == "line"
    latency = by_title["Request latency from intended start (all replicas)"]
    values = [s["value"] for s in latency["fieldConfig"]["defaults"]["thresholds"]["steps"]]
    assert values == [None, 3.0, 5.0, 10.0]


def test_quantiles_aggregate_buckets_across_replicas_first(dashboard: dict) -> None:
    for expr in queries(dashboard):
        for call in re.finditer(r"histogram_quantile\([\d.]+, (\w+) by \(le\)", expr):
            assert call.group(1) == "sum", expr
    assert any("histogram_quantile" in q for q in queries(dashboard))


def test_grafanalib_is_imported_only_under_dashboards() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for folder in ("soak", "mock")
        for path in (ROOT / folder).rglob("*.py")
        if "grafanalib" in path.read_text()
    ]
    assert offenders == []


# What Grafana 11 reads: current JSON, a step no field coarsens, runs that show at any range.
RANGE_WINDOW = re.compile(
    r"\b(?:rate|increase|deriv|predict_linear)\((?:[^()\[\]]|\{[^}]*\})+\[([^\]]+)\]"
)
OVER_TIME = re.compile(r"\b(\w+)_over_time\((\w+)(?:\{[^}]*\})?\[([^\]]+)\]\)")


def test_the_json_is_grafana_11s(dashboard: dict) -> None:
    assert dashboard["schemaVersion"] == soak_dashboard.SCHEMA_VERSION == 39
    text = json.dumps(dashboard)
    for field in ("maxDataPoints", "intervalFactor", '"rows"', '"span"', "null, "):
        assert field not in text, field
    heatmaps = [p for p in panels(dashboard) if p["type"] == "heatmap"]
    assert heatmaps, "no heatmap panel"
    for panel in heatmaps:  # the current panel, on Prometheus buckets; none of the legacy one
        assert panel["options"]["calculate"] is False
        assert panel["targets"][0]["format"] == "heatmap"
        assert not {"cards", "color", "dataFormat", "yAxis", "heatmap"} & panel.keys()
    for panel in panels(dashboard):
        for target in panel.get("targets", []):
            assert target["range"] is True and target["editorMode"] == "code", panel["title"]
    rows = [p for p in panels(dashboard) if p["type"] == "row"]
    assert rows and all(set(r) <= grafana11.ROW for r in rows)


def test_windows_follow_the_step_or_span_hours(dashboard: dict) -> None:
    """rate() and increase() step by $__rate_interval (never $__interval, which can hold fewer
    than two samples); a fixed window is a trend of an hour or more."""
    windows = [w for expr in queries(dashboard) for w in RANGE_WINDOW.findall(expr)]
    assert "$__rate_interval" in windows and "1h" in windows
    for window in windows:
        assert window == "$__rate_interval" or re.fullmatch(r"\d+[hd]", window), window


def test_runs_shorter_than_a_step_still_show(dashboard: dict) -> None:
    """At 24 h Grafana asks for a point every 1-2 minutes: a 20 s phase or a breaker open for
    seconds falls between two points of an instant query; the peak over each step does not."""
    by_title = {p["title"]: p for p in panels(dashboard)}
    for title, metric in (("Phase running", "soak_phase_running"),
                          ("Breaker state per provider: observed vs reported",
                           "soak_breaker_state")):  # fmt: skip
        expr = by_title[title]["targets"][0]["expr"]
        assert OVER_TIME.findall(expr) == [("max", metric, "$__interval")], expr
    (note,) = dashboard["annotations"]["list"]
    assert OVER_TIME.findall(note["expr"]) == [("max", "soak_phase_running", "$__interval")]
    assert note["expr"].endswith("== 1")
    # counters of discrete events (runs, restarts, streams) count per step, first event included
    offsets = [o for expr in queries(dashboard) for o in re.findall(r"offset (\S+)\)", expr)]
    assert len(offsets) == 5 and set(offsets) == {"$__interval"}, offsets


def test_long_trend_and_streaming_rows(dashboard: dict) -> None:
    rows = {p["title"]: p for p in panels(dashboard) if p["type"] == "row"}
    assert {"Long-term trends (set the range to days)", "Streaming"} <= rows.keys()
    exprs = "\n".join(queries(dashboard))
    for needle in (
        "deriv(soak_gateway_resident_memory_bytes",
        "deriv(soak_gateway_open_fds",
        'soak_gateway_overhead_seconds_bucket{target=~"$target", phase="overhead"}[1h]',
        "soak_gateway_restarts_total",
        "soak_time_to_first_token_seconds",
        "soak_inter_token_gap_seconds_bucket",
        "soak_time_per_output_token_seconds",
        "soak_phase_last_gateway_added_ttft_seconds",
        "soak_stream_integrity_total",
    ):
        assert needle in exprs, needle


def test_streaming_slo_lines_come_from_slo_streaming(dashboard: dict) -> None:
    def lines(built: dict, title: str) -> list[float]:
        panel = next(p for p in panels(built) if p["title"] == title)
        return [s["value"] for s in panel["fieldConfig"]["defaults"]["thresholds"]["steps"][1:]]

    assert lines(dashboard, "Time to first token vs SLO") == [1.0]
    assert lines(dashboard, "Inter-token gap and TPOT vs SLO") == [0.5]
    assert lines(dashboard, "Gateway-added TTFT (last run, exact)") == [0.005, 0.1]
    assert lines(dashboard, "Streams within the goodput bounds (TTFT, TPOT)") == [0.99]
    custom = soak_dashboard.build({"streaming": {"ttft": 0.8, "tpot": 0.25,
                                                 "goodput_ratio": 0.95}})  # fmt: skip
    assert lines(custom, "Time to first token vs SLO") == [0.8]
    assert lines(custom, "Streams within the goodput bounds (TTFT, TPOT)") == [0.95]
    within = next(p for p in panels(custom) if p["title"].startswith("Streams within"))
    assert r"le=~`0\.8`" in within["targets"][0]["expr"]  # the bound is a bucket bound


def _dropped(ours: object, theirs: object, path: str = "") -> list[str]:
    """Paths of `ours` that `theirs` lacks or changed."""
    if isinstance(ours, dict) and isinstance(theirs, dict):
        out = []
        for key, value in ours.items():
            here = f"{path}.{key}"
            out += _dropped(value, theirs[key], here) if key in theirs else [here]
        return out
    if isinstance(ours, list) and isinstance(theirs, list) and len(ours) == len(theirs):
        pairs = enumerate(zip(ours, theirs, strict=True))
        return [p for i, (a, b) in pairs for p in _dropped(a, b, f"{path}[{i}]")]
    return [] if ours == theirs else [path]


PROMETHEUS_ANNOTATION = {"titleFormat", "tagKeys"}
"""Fields the Prometheus data source reads from an annotation; the SDK's AnnotationQuery is the
generic one and does not model them."""


def test_grafana_foundation_sdk_reads_every_panel_and_target(dashboard: dict) -> None:
    """Grafana Labs' own models (grafana-foundation-sdk, Grafana 11 build) as an independent
    reader: the JSON parses into its Dashboard, and back out every panel, target and option we
    wrote is still there: titles, types, exprs, and no field Grafana's schema does not know."""
    from grafana_foundation_sdk.cog.encoder import JSONEncoder
    from grafana_foundation_sdk.cog.plugins import register_default_plugins
    from grafana_foundation_sdk.models.dashboard import Dashboard

    register_default_plugins()  # typed options and field config per panel type, queries by type
    model = Dashboard.from_json(dashboard)
    back = json.loads(json.dumps(model, cls=JSONEncoder))

    def summary(d: dict) -> list[tuple]:
        return [(p["id"], p["title"], p["type"],
                 [(t["refId"], t["expr"], t.get("legendFormat")) for t in p.get("targets", [])])
                for p in panels(d)]  # fmt: skip

    assert summary(back) == summary(dashboard)
    assert sum(len(targets) for *_, targets in summary(back)) >= 50
    assert back["schemaVersion"] == 39 and back["uid"] == dashboard["uid"]
    for ours, theirs in zip(panels(dashboard), panels(back), strict=True):
        assert _dropped(ours, theirs) == [], ours["title"]
    top = {k: v for k, v in dashboard.items() if k != "panels"}
    dropped = _dropped(top, back)
    assert {p.rsplit(".", 1)[1] for p in dropped} == PROMETHEUS_ANNOTATION, dropped
    assert back["annotations"]["list"][0]["expr"] == dashboard["annotations"]["list"][0]["expr"]
    # the reader is not lenient: the legacy heatmap's fields and Graphite-era target fields
    # would not survive the round trip
    legacy = json.loads(json.dumps(dashboard))
    heatmap = next(p for p in legacy["panels"] if p["type"] == "heatmap")
    heatmap.update(cards={"cardPadding": 1}, yAxis={"format": "s"})
    heatmap["targets"][0]["step"] = 10
    again = json.loads(json.dumps(Dashboard.from_json(legacy), cls=JSONEncoder))
    read = next(p for p in again["panels"] if p["type"] == "heatmap")
    assert sorted(_dropped(heatmap, read)) == [".cards", ".targets[0].step", ".yAxis"]
