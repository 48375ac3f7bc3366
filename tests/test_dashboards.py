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
    found = []
    for panel in dashboard["panels"]:
        found.append(panel)
        found.extend(panel.get("panels", []))
    return found


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
    assert used <= known, sorted(used - known)
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
