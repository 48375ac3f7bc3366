"""Generated alert rules: structure, promtool check + unit tests, coverage of every alert."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry, start_http_server

from soak.config.schema import Sections, SloConfig, Tier
from soak.metrics import BASE_BUCKETS, SoakMetrics, register_default_collectors
from soak.phases import load_config
from soak.promql import le_matcher
from soak.results import Outcome, Result
from soak.rules import (
    DEFAULT_PHASE_INTERVALS,
    AlertOptions,
    build_prometheus_rule,
    build_rules,
)

ROOT = Path(__file__).resolve().parent.parent
RULES_FILE = ROOT / "dashboards" / "generated" / "soak.rules.yml"
"""Built for the deployed config's schedule (deploy/base/config.yaml)."""
REFERENCE_FILE = ROOT / "dashboards" / "tests" / "all-phases.rules.yml"
"""Every phase scheduled: what the promtool unit tests run against."""
RULE_TESTS = sorted((ROOT / "dashboards" / "tests").glob("*.test.yml"))
ALERTS_DOC = ROOT / "docs" / "alerts.md"


DEFAULT_SLO = load_config(None, env={}).slo
"""The built-in SLO block (the quick profile's, the seeds' numbers)."""


def slo_with(tiers: dict[str, Tier] | None = None, **sections: object) -> SloConfig:
    """The built-in SLO block with some tiers or phase sections replaced."""
    return SloConfig(
        tiers={**DEFAULT_SLO.tiers, **(tiers or {})},
        phases=Sections({**DEFAULT_SLO.phases, **sections}),
    )


def promtool() -> str:
    path = shutil.which("promtool") or "/usr/bin/promtool"
    assert Path(path).exists(), "promtool is required (Debian package prometheus)"
    return path


def alerts(rules: dict) -> list[dict]:
    return [r for g in rules["groups"] for r in g["rules"] if "alert" in r]


def alert_names(rules: dict) -> list[str]:
    return [r["alert"] for r in alerts(rules)]


@pytest.fixture(scope="module")
def default_rules() -> dict:
    return build_rules(DEFAULT_SLO, phases=DEFAULT_PHASE_INTERVALS)


def test_every_alert_has_for_severity_and_annotations(default_rules: dict) -> None:
    for rule in alerts(default_rules):
        name = rule["alert"]
        assert re.fullmatch(r"\d+[smh]", rule["for"]) and rule["for"] != "0s", name
        assert rule["labels"]["severity"] in {"warning", "critical"}, name
        notes = rule["annotations"]
        assert notes["summary"] and notes["description"], name
        assert notes["runbook_url"].endswith(f"docs/alerts.md#{name.lower()}"), name


def test_severity_follows_the_tiers(default_rules: dict) -> None:
    for rule in alerts(default_rules):
        tier = rule["labels"].get("tier")
        if tier is not None:
            expected = {"target": "warning", "acceptable": "critical"}[tier]
            assert rule["labels"]["severity"] == expected, rule["alert"]


def test_no_ratio_divides_by_a_bare_denominator(default_rules: dict) -> None:
    for group in default_rules["groups"]:
        for rule in group["rules"]:
            for division in re.finditer(r"/\s*(\S+)", rule["expr"]):
                assert division.group(1).startswith("clamp_min("), (rule, division.group(0))


def test_ratio_and_latency_alerts_are_traffic_gated(default_rules: dict) -> None:
    for rule in alerts(default_rules):
        if rule["alert"] == "SoakGatewayMemoryGrowth":  # a ratio of RSS samples, not traffic
            continue
        if "/ clamp_min(" in rule["expr"] or rule["alert"].startswith("SoakErrorBudget"):
            assert re.search(r"\n(and on \([a-z, ]+\)\n.*>= \d+|.* >= 1)", rule["expr"]), rule


def test_burn_rate_windows_and_factors(default_rules: dict) -> None:
    burns = [r for r in alerts(default_rules) if r["alert"].startswith("SoakErrorBudget")]
    fast, slow, day, days = burns
    # runs every 15 min (DEFAULT_PHASE_INTERVALS): the 5m short window widens to 15m + 5m
    assert "ratio_rate1h > 0.144" in fast["expr"] and "ratio_rate20m > 0.144" in fast["expr"]
    assert "ratio_rate6h > 0.06" in slow["expr"] and "ratio_rate30m > 0.06" in slow["expr"]
    assert "ratio_rate1d > 0.03" in day["expr"] and "ratio_rate2h > 0.03" in day["expr"]
    assert "ratio_rate3d > 0.01" in days["expr"] and "ratio_rate6h > 0.01" in days["expr"]
    assert {r["alert"] for r in (day, days)} == {"SoakErrorBudgetTicketBurn"}
    assert {r["labels"]["severity"] for r in (day, days)} == {"warning"}  # tickets never page
    assert "target:soak_requests:rate1h * 3600 >= 100" in fast["expr"]
    recorded = {r.get("record") for g in default_rules["groups"] for r in g["rules"]}
    windows = ("20m", "30m", "1h", "2h", "6h", "1d", "3d")
    assert {f"target:soak_request_errors:ratio_rate{w}" for w in windows} <= recorded


def test_burn_windows_cover_the_gap_between_scheduled_runs() -> None:
    """An hourly-only schedule: every short window reaches past the hour (65m), so a steady
    fault is seen by every evaluation; the long windows never get shorter than the short."""
    rules = build_rules(DEFAULT_SLO, phases={"readiness": 3600, "stress": 600})
    fast, slow, day, _ = (r for r in alerts(rules) if r["alert"].startswith("SoakErrorBudget"))
    assert "ratio_rate65m > 0.144" in fast["expr"] and "ratio_rate65m > 0.06" in slow["expr"]
    assert "ratio_rate1h > 0.144" not in fast["expr"]  # long widened to the short: 65m
    assert "ratio_rate2h > 0.03" in day["expr"]  # already past the gap
    # stress (every 10 min) spends no budget: it does not narrow the window


def test_staleness_and_daemon_down_are_different_alerts(default_rules: dict) -> None:
    by_name = {r["alert"]: r for r in alerts(default_rules)}
    assert "soak_phase_last_run_timestamp_seconds" in by_name["SoakPhaseNotRunning"]["expr"]
    assert by_name["SoakDaemonDown"]["expr"] == 'up{job="soak"} == 0'
    assert by_name["SoakDaemonAbsent"]["expr"] == 'absent(up{job="soak"})'
    assert by_name["SoakPhaseNeverRan"]["expr"].endswith("soak_phase_last_run_timestamp_seconds")
    schedule = [r for r in default_rules["groups"][0]["rules"] if "schedule" in r["record"]]
    assert {r["labels"]["phase"]: r["expr"] for r in schedule}["stress"] == "vector(3600)"


def test_windows_follow_the_schedule_and_unscheduled_phases_get_no_alerts() -> None:
    options = AlertOptions(job="llm-soak")
    rules = build_rules(DEFAULT_SLO, phases={"overhead": 3600}, options=options)
    exprs = " ".join(r["expr"] for r in alerts(rules))
    assert "[65m]" in exprs and "[20m]" not in exprs
    names = alert_names(rules)
    assert "SoakGatewayOverheadHigh" in names
    assert not {"SoakStressRequestsFailed", "SoakLatencyHigh", "SoakFailoverSlow"} & set(names)
    assert 'up{job="llm-soak"} == 0' in exprs


def test_thresholds_come_from_the_slo_block() -> None:
    slo = slo_with(
        overhead=replace(DEFAULT_SLO.overhead, p95=0.015),
        tiers={"success_ratio": Tier(target=0.999, acceptable=0.95)},
    )
    rules = build_rules(slo, phases=DEFAULT_PHASE_INTERVALS)
    overhead = next(r for r in alerts(rules) if r["labels"].get("statistic") == "p95")
    assert "le=~`0\\.015`" in overhead["expr"] and "> 0.05" in overhead["expr"]
    fast = next(r for r in alerts(rules) if r["alert"] == "SoakErrorBudgetFastBurn")
    assert "> 0.0144" in fast["expr"]
    # 14.4 x 0.1% = 1.44% errors is still within the 95% acceptable tier: a warning, not a page.
    assert fast["labels"]["severity"] == "warning"


def test_bad_schedule_and_missing_buckets_are_one_line_errors() -> None:
    """SLO values are typed and validated by the config loader (tests/test_config.py); what
    build_rules still checks is the schedule it is given and the bucket bounds."""
    with pytest.raises(ValueError, match=r"^phases\.stress: expected an interval"):
        build_rules(DEFAULT_SLO, phases={"stress": 0})
    with pytest.raises(ValueError, match=r"^phases\.strees: unknown phase"):
        build_rules(DEFAULT_SLO, phases={"strees": 60})
    with pytest.raises(ValueError, match=r"slo\.overhead\.p95: threshold 0\.015s is not a bucket"):
        slo = slo_with(overhead=replace(DEFAULT_SLO.overhead, p95=0.015))
        build_rules(slo, phases={}, buckets=BASE_BUCKETS)


@pytest.mark.parametrize(
    ("value", "spellings"),
    [
        (1.0, ["1", "1.0"]),
        (0.005, ["0.005"]),
        (5e-05, ["5e-05", "0.00005"]),
        (10.0, ["10", "10.0"]),
        (1e6, ["1e+06", "1000000", "1000000.0"]),
    ],
)
def test_le_matcher_accepts_every_spelling(value: float, spellings: list[str]) -> None:
    matcher = le_matcher(value)
    pattern = re.fullmatch(r"le=~`(.*)`", matcher).group(1)
    for spelling in spellings:
        assert re.fullmatch(pattern, spelling), (matcher, spelling)
    assert not re.fullmatch(pattern, "0.5") and not re.fullmatch(pattern, "+Inf")


def test_prometheus_rule_wraps_the_same_groups(default_rules: dict) -> None:
    obj = build_prometheus_rule(DEFAULT_SLO, phases=DEFAULT_PHASE_INTERVALS, namespace="soak")
    assert obj["apiVersion"] == "monitoring.coreos.com/v1" and obj["kind"] == "PrometheusRule"
    assert obj["metadata"]["labels"]["release"] == "kube-prometheus-stack"
    assert obj["metadata"]["namespace"] == "soak"
    assert obj["spec"] == default_rules
    custom = build_prometheus_rule(DEFAULT_SLO, phases={}, labels={"prometheus": "main"})
    assert "release" not in custom["metadata"]["labels"]
    assert custom["metadata"]["labels"]["prometheus"] == "main"


def test_reference_file_matches_the_defaults(default_rules: dict) -> None:
    assert yaml.safe_load(REFERENCE_FILE.read_text()) == default_rules


def test_deployed_rules_are_the_unit_tested_rules_for_the_deployed_schedule() -> None:
    """Each deployed rule is verbatim a rule of the unit-tested reference file, except the
    schedule constants, which come from deploy/base/config.yaml (cron every 15 min, hourly)."""
    reference = [
        r for g in yaml.safe_load(REFERENCE_FILE.read_text())["groups"] for r in g["rules"]
    ]
    deployed = yaml.safe_load(RULES_FILE.read_text())
    schedule = {}
    for rule in (r for g in deployed["groups"] for r in g["rules"]):
        if rule.get("record") == "phase:soak_schedule_interval_seconds:config":
            schedule[rule["labels"]["phase"]] = rule["expr"]
        else:
            assert rule in reference, rule.get("alert") or rule.get("record")
    assert schedule == {"calibration": "vector(900)", "overhead": "vector(900)",
                        "stress": "vector(3600)"}  # fmt: skip
    assert {"SoakGatewayOverheadHigh", "SoakStressRequestsFailed"} <= set(alert_names(deployed))
    assert "SoakFailoverSlow" not in alert_names(deployed)  # failover is not scheduled there


def test_promtool_check_rules_accepts_generated_and_custom_rules(tmp_path: Path) -> None:
    custom = tmp_path / "custom.rules.yml"
    # 5e-05 makes the le matcher escape "-" for RE2 (le=~`0\.00005|5e\-05`).
    slo = slo_with(
        overhead=replace(DEFAULT_SLO.overhead, p50=5e-05, p99=0.25),
        tiers={"p50": Tier(target=1.0, acceptable=2.0)},
    )
    custom.write_text(yaml.safe_dump(build_rules(slo, phases={"readiness": 300, "overhead": 60})))
    for path in (RULES_FILE, REFERENCE_FILE, custom):
        done = subprocess.run(
            [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
        )
        assert done.returncode == 0, done.stdout + done.stderr
        assert "SUCCESS" in done.stdout


@pytest.mark.parametrize("test_file", [p.name for p in RULE_TESTS])
def test_promtool_unit_tests_pass(test_file: str) -> None:
    done = subprocess.run(
        [promtool(), "test", "rules", test_file],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT / "dashboards" / "tests",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_rule_unit_test_files_exist() -> None:
    assert len(RULE_TESTS) >= 5, "dashboards/tests/*.test.yml missing"


def test_every_alert_rule_is_unit_tested_fired_and_not_fired(default_rules: dict) -> None:
    fired: dict[str, list[dict]] = {}
    quiet: set[str] = set()
    for path in RULE_TESTS:
        for group in yaml.safe_load(path.read_text())["tests"]:
            for case in group.get("alert_rule_test", []):
                if case.get("exp_alerts"):
                    labels = [a["exp_labels"] for a in case["exp_alerts"]]
                    fired.setdefault(case["alertname"], []).extend(labels)
                else:
                    quiet.add(case["alertname"])
    for rule in alerts(default_rules):
        name, static = rule["alert"], rule["labels"]
        assert any(static.items() <= got.items() for got in fired.get(name, [])), (name, static)
        assert name in quiet, f"{name} has no not-fired case"


def test_runbook_has_a_section_per_alert(default_rules: dict) -> None:
    headings = set(re.findall(r"^## (Soak\w+)$", ALERTS_DOC.read_text(), flags=re.M))
    assert set(alert_names(default_rules)) <= headings


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _api(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as response:
        return json.load(response)


@pytest.mark.integration
def test_rules_evaluate_on_real_exposition_in_prometheus(tmp_path: Path) -> None:
    """A real Prometheus scrapes SoakMetrics and evaluates the generated rules: every rule is
    healthy, and the overhead alerts go pending exactly for the breached statistics, which
    proves the `le` matchers match prometheus_client's spelling of the bounds."""
    prometheus = shutil.which("prometheus") or "/usr/bin/prometheus"
    assert Path(prometheus).exists(), "prometheus is required (Debian package prometheus)"
    registry = CollectorRegistry()
    metrics = SoakMetrics(registry)
    register_default_collectors(registry)
    server, _ = start_http_server(0, addr="127.0.0.1", registry=registry)
    stop = threading.Event()

    def feed() -> None:  # 30 ms of overhead per request: above 5/5/10/20 ms, below 100 ms
        seq = 0
        while not stop.wait(0.05):
            for _ in range(25):
                seq += 1
                done = Result(seq, 0.0, 0.0, 0.13, Outcome.OK, provider="primary", service_s=0.1)
                metrics.observe(done, target="gw", phase="overhead")

    feeder = threading.Thread(target=feed, daemon=True)
    feeder.start()
    port = _free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(yaml.safe_dump({
        "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
        "rule_files": [str(RULES_FILE)],
        "scrape_configs": [{"job_name": "soak", "static_configs": [
            {"targets": [f"127.0.0.1:{server.server_port}"]}]}],
    }))  # fmt: skip
    log = (tmp_path / "prometheus.log").open("wb")
    proc = subprocess.Popen(
        [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp_path / 'tsdb'}",
         f"--web.listen-address=127.0.0.1:{port}", "--log.level=warn"],
        stdout=subprocess.DEVNULL, stderr=log,
    )  # fmt: skip
    base = f"http://127.0.0.1:{port}/api/v1"
    query = 'ALERTS{alertname="SoakGatewayOverheadHigh", alertstate="pending"}'
    pending: set[str] = set()
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and len(pending) < 4:
            time.sleep(1)
            with contextlib.suppress(OSError):
                result = _api(f"{base}/query?query={urllib.parse.quote(query)}")["data"]
                pending = {a["metric"]["statistic"] for a in result["result"]}
        rules = _api(f"{base}/rules")["data"]["groups"]
    finally:
        stop.set()
        proc.terminate()
        proc.wait(timeout=15)
        log.close()
        server.shutdown()
        server.server_close()
    assert pending == {"mean", "p50", "p90", "p95"}  # p99 < 100 ms holds: no alert
    unhealthy = [(r["name"], r.get("lastError")) for g in rules for r in g["rules"]
                 if r["health"] != "ok"]  # fmt: skip
    assert unhealthy == []
    assert sum(len(g["rules"]) for g in rules) == len(
        [r for g in yaml.safe_load(RULES_FILE.read_text())["groups"] for r in g["rules"]]
    )
